"""Early stopping, as a plugin, evaluated on streamed metrics while runs are still going.

Reads ``matrix.earlyStopping``. ``failure_early_stopping`` and ``metric_early_stopping``
without a policy stop the whole sweep (as Polyaxon's server does); with a ``median``,
``truncation`` or ``diff`` policy (which Polyaxon ships as no-ops) they stop individual runs.
The exact rules are in ``docs/early-stopping.md``; the policy arithmetic is in the pure
functions :func:`median_decision`, :func:`truncation_decision` and :func:`diff_decision`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plugin import RunState, SweepState, hookimpl

__all__ = [
    "EarlyStopping",
    "diff_decision",
    "due",
    "median_decision",
    "plugin",
    "truncation_decision",
]

ORCHESTRATOR_PLUGIN_API = 1


def worse(a: float, b: float, maximize: bool) -> bool:
    """Is ``a`` strictly worse than ``b``?"""
    return a < b if maximize else a > b


def due(step: int, min_interval: int | None, evaluation_interval: int | None) -> bool:
    """Is ``step`` an evaluation step? From ``minInterval`` (default 1) every
    ``evaluationInterval`` steps (default 1)."""
    start = min_interval if min_interval is not None else 1
    every = evaluation_interval if evaluation_interval else 1
    return step >= start and (step - start) % every == 0


def median_decision(
    best_so_far: float, references: list[float], maximize: bool, min_samples: int
) -> str | None:
    """Stop when the run's best value so far is worse than the median of the other runs'
    values at this step (Optuna's MedianPruner)."""
    if len(references) < max(min_samples, 1):
        return None
    middle = statistics.median(references)
    if worse(best_so_far, middle, maximize):
        return f"best {best_so_far:g} is worse than the median {middle:g} of {len(references)} runs"
    return None


def truncation_decision(
    value: float, references: list[float], percent: float, maximize: bool, min_samples: int
) -> str | None:
    """Stop when the run is among the worst ``percent``% of the runs at this step (itself
    included): with n runs, the worst floor(n * percent / 100) go."""
    if len(references) < max(min_samples, 1):
        return None
    n = len(references) + 1
    cut = math.floor(n * percent / 100)
    if cut < 1:
        return None
    better = sum(1 for other in references if worse(value, other, maximize))
    if better >= n - cut:
        return f"{value:g} ranks {better + 1} of {n}; the worst {cut} ({percent:g}%) are truncated"
    return None


def diff_decision(
    value: float, references: list[float], percent: float, maximize: bool, min_samples: int
) -> str | None:
    """Stop when the run is worse than the best run at this step by more than ``percent``% of
    the best value."""
    if len(references) < max(min_samples, 1):
        return None
    best = max(references) if maximize else min(references)
    margin = abs(best) * percent / 100
    limit = best - margin if maximize else best + margin
    if worse(value, limit, maximize):
        return f"{value:g} is more than {percent:g}% worse than the best {best:g}"
    return None


@dataclass
class _Sweep:
    rules: list[Any]
    total: int
    failures: int = 0
    #: metric -> run id -> step -> value
    values: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    reports: dict[tuple[str, str], int] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    #: The runs that reported a metric a rule watches, and their states as the events said
    #: (finished runs are not kept in the controller's memory; this is all a policy needs).
    followed: set[str] = field(default_factory=set)
    states: dict[str, RunState] = field(default_factory=dict)


class EarlyStopping:
    """Stateless itself: what it tracks of a sweep lives in ``ctx.per_sweep``."""

    ORCHESTRATOR_PLUGIN_API = 1

    def _sweep(self, ctx: Any) -> _Sweep | None:
        def start() -> _Sweep:
            rules = list(getattr(ctx.spec.operation.matrix, "early_stopping", None) or [])
            return _Sweep(rules, len(ctx.plan))

        known: _Sweep = ctx.per_sweep(self, start)
        return known if known.rules else None

    @hookimpl
    async def observes(self, ctx: Any) -> list[str]:
        """Nothing to watch in a sweep without rules (no deliveries at all); with only
        failure rules, no metrics; with only metric rules, no state changes."""
        rules = getattr(ctx.spec.operation.matrix, "early_stopping", None) or []
        kinds = {rule.__struct_config__.tag for rule in rules}
        wanted = []
        if "failure_early_stopping" in kinds or any(_policy_of(rule) for rule in rules):
            wanted.append("on_run_state_changed")  # failures counted; runs' states followed
        if "metric_early_stopping" in kinds:
            wanted.append("on_metric")
        return wanted

    @hookimpl
    async def on_run_state_changed(self, event: Any, ctx: Any) -> None:
        sweep = self._sweep(ctx)
        if sweep is None:
            return
        if event.run_id in sweep.followed:
            sweep.states[event.run_id] = event.state
        if event.state not in (RunState.FAILED, RunState.UPSTREAM_FAILED):
            return
        sweep.failures += 1
        limits = [
            r.percent for r in sweep.rules if r.__struct_config__.tag == "failure_early_stopping"
        ]
        if not limits:
            return
        percent = min(limits)
        share = sweep.failures / max(sweep.total, 1)
        if share >= percent / 100:
            ctx.stop_sweep(
                f"failure early stopping: {sweep.failures} of {sweep.total} runs "
                f"failed ({share:.1%} >= {percent:g}%)",
                SweepState.STOPPED,
            )

    @hookimpl
    async def on_metric(self, event: Any, ctx: Any) -> None:
        sweep = self._sweep(ctx)
        if sweep is None:
            return
        for rule in sweep.rules:
            if rule.__struct_config__.tag != "metric_early_stopping":
                continue
            value = event.values.get(rule.metric)
            if value is None:
                continue
            key = (event.run_id, rule.metric)
            sweep.reports[key] = sweep.reports.get(key, 0) + 1
            step = event.step if event.step is not None else sweep.reports[key]
            sweep.values.setdefault(rule.metric, {}).setdefault(event.run_id, {})[step] = value
            sweep.followed.add(event.run_id)
            maximize = rule.optimization == "maximize"
            if rule.policy is None:
                if value == rule.value or not worse(value, rule.value, maximize):
                    sign = ">=" if maximize else "<="
                    ctx.stop_sweep(
                        f"early stopping: run {event.index} reported {rule.metric} "
                        f"= {value:g} ({sign} {rule.value:g}) at step {step}",
                        SweepState.SUCCEEDED,
                    )
                continue
            if event.run_id in sweep.stopped:
                continue
            detail = self._policy(rule, sweep, event.run_id, step, value, maximize, ctx)
            if detail and ctx.stop_run(
                event.run_id,
                f"early_stopped: {rule.policy.__struct_config__.tag} "
                f"on {rule.metric} at step {step}: {detail}",
            ):
                sweep.stopped.add(event.run_id)

    @staticmethod
    def _policy(
        rule: Any, sweep: _Sweep, run_id: str, step: int, value: float, maximize: bool, ctx: Any
    ) -> str | None:
        policy = rule.policy
        kind = policy.__struct_config__.tag
        if not due(step, policy.min_interval, policy.evaluation_interval):
            return None
        allowed = {RunState.RUNNING, RunState.SUCCEEDED}
        if kind == "truncation" and not policy.include_succeeded:
            allowed = {RunState.RUNNING}
        references = []
        for other, steps in sweep.values.get(rule.metric, {}).items():
            if other == run_id or step not in steps:
                continue
            if sweep.states.get(other, RunState.RUNNING) in allowed:
                references.append(steps[step])
        min_samples = policy.min_samples or 1
        if kind == "median":
            mine = [v for s, v in sweep.values[rule.metric][run_id].items() if s <= step]
            best = max(mine) if maximize else min(mine)
            return median_decision(best, references, maximize, min_samples)
        if kind == "truncation":
            return truncation_decision(value, references, policy.percent, maximize, min_samples)
        return diff_decision(value, references, policy.percent, maximize, min_samples)


def _policy_of(rule: Any) -> Any:
    """A metric rule's per-run policy (median, truncation, diff); None for the others."""
    return getattr(rule, "policy", None)


plugin = EarlyStopping()
