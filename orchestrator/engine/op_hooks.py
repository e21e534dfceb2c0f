"""Polyaxon's ``hooks``: components run after an operation ends, as local processes.

Each hook whose ``trigger`` matches the operation's final status (``done``, or none, matches
any) and whose ``conditions`` render true runs once, one hook after another, as a 1-run sweep
of its own: its component comes from the local hub (``hubRef``, resolved by ``spec/load.py``),
its sweep names the operation's (``parent_id``) and ``hook:<index>`` (``node``), so ``show``
and ``logs`` reach it. As in Polyaxon, the hook's ``params`` and ``conditions`` are rendered
against the operation's context (its inputs and outputs by name, ``params.X``, ``globals.*``
with its ``status``), and the hook's component receives ``name``, ``uuid``, ``kind``,
``status``, ``duration``, ``inputs``, ``outputs`` and ``condition`` as context-only params
(``disableDefaults: true`` leaves them out). A hook that cannot run or fails is one line on
``err`` and a failed sweep in the journal; it never changes the operation's state.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import msgspec

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.states import SweepState
from orchestrator.exceptions import OrchestratorError, SpecError
from orchestrator.executors.base import Executor
from orchestrator.spec import Plan, compile_plan
from orchestrator.spec import models as m
from orchestrator.spec.ios import is_template
from orchestrator.spec.load import LoadedSpec, resolve_component, with_ignored
from orchestrator.spec.templating import Renderer
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

if TYPE_CHECKING:
    from orchestrator.engine.records import SweepResult
    from orchestrator.engine.sweep import SweepController

__all__ = [
    "FINAL_STATUSES",
    "HookContext",
    "HookOutcome",
    "hooks_after_sweep",
    "run_hooks",
    "triggered",
]

#: The final statuses a hook's ``trigger`` may name, besides ``done`` (Polyaxon's
#: ``get_allowable_hook_values``).
FINAL_STATUSES = frozenset({"succeeded", "failed", "stopped", "skipped", "upstream_failed"})
#: Characters of a failed hook's last stderr line said with its failure.
_TAIL_CHARS = 200


@dataclass(frozen=True)
class HookContext:
    """What the hooks of one operation know of it once it ended."""

    #: The operation's sweep (a pipeline's node sweep, the pipeline's, a top-level sweep).
    sweep_id: str
    name: str | None
    #: Its final status (``succeeded``, ``failed``, ``stopped``, ``skipped``...).
    status: str
    #: Its inputs and outputs (a 1-run operation's; empty for a sweep of many runs).
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    reason: str | None
    #: Where the operation's file is, for messages and relative paths.
    base_dir: Path
    source: str
    #: Polyaxon's ``kind`` of the operation (``job``, ``dag``, ``matrix``...).
    kind: str = "job"


@dataclass(frozen=True)
class HookOutcome:
    """What became of one hook: ``state`` is its sweep's end state (``succeeded``,
    ``failed``...), ``not_triggered`` (another status) or ``condition_false``."""

    index: int
    hub_ref: str
    state: str
    sweep_id: str | None = None
    reason: str | None = None
    ran: bool = field(default=False)


def triggered(hook: m.Hook, status: str) -> bool:
    """Polyaxon's ``check_trigger_for_status``: no trigger, or ``done``, matches any final
    status; otherwise the status itself."""
    return hook.trigger in (None, "done") or hook.trigger == status


# --------------------------------------------------------------------------- context
def _globals(context: HookContext, journal: Journal) -> dict[str, Any]:
    """``globals.*`` of the operation (its sweep's times, read from the journal)."""
    times: dict[str, Any] = {"created_at": None, "started_at": None, "finished_at": None}
    duration = None
    try:
        row = journal.find_sweep(context.sweep_id)
    except OrchestratorError:
        row = None
    if row is not None:
        times = {k: getattr(row, k) for k in times}
        if row.started_at is not None:
            duration = (row.finished_at or time.time()) - row.started_at
    return {
        "uuid": context.sweep_id,
        "name": context.name,
        "status": context.status,
        "kind": context.kind,
        "owner_name": "local",
        "project_name": "local",
        "project_unique_name": "local.local",
        "duration": duration,
        **times,
    }


def _defaults(context: HookContext, glob: Mapping[str, Any]) -> dict[str, Any]:
    """What Polyaxon gives every hook as context-only params (unless ``disableDefaults``)."""
    return {
        "name": context.name,
        "uuid": context.sweep_id,
        "kind": context.kind,
        "status": context.status,
        "duration": glob.get("duration"),
        "inputs": context.inputs,
        "outputs": context.outputs,
        "condition": {
            "type": context.status,
            "status": True,
            "reason": context.reason,
            "message": context.reason,
        },
    }


def _render_context(context: HookContext, glob: dict[str, Any]) -> dict[str, Any]:
    """The operation's template context for its hooks' ``params`` and ``conditions``: its
    inputs and outputs by name, ``params.X``, ``globals``, and the hooks' defaults."""
    values = {**context.inputs, **context.outputs}
    params = {k: {"value": v, "as_str": v} for k, v in values.items()}
    return {**_defaults(context, glob), **values, "params": params, "globals": glob}


def _rendered_params(
    hook: m.Hook, where: str, renderer: Renderer, scope: dict[str, Any]
) -> dict[str, m.Param]:
    params: dict[str, m.Param] = {}
    for key, param in (hook.params or {}).items():
        if is_template(param.value):
            text = renderer.render(param.value, scope, field=f"{where}.params.{key}.value")
            param = msgspec.structs.replace(param, value=text)
        params[key] = param
    return params


def _condition_holds(hook: m.Hook, where: str, renderer: Renderer, scope: dict[str, Any]) -> bool:
    if hook.conditions is None:
        return True
    from orchestrator.spec.dag import _as_bool  # the same reading as a node's conditions

    field_name = f"{where}.conditions"
    text = renderer.render(hook.conditions, scope, field=field_name).strip()
    return _as_bool(text, field_name, "")


def _hook_spec(
    hook: m.Hook, params: dict[str, m.Param], context: HookContext, glob: dict[str, Any]
) -> LoadedSpec:
    """The hook as a runnable operation: its hub component with its params (and Polyaxon's
    defaults as context-only params, which win over params of the same name, as there)."""
    if not hook.disable_defaults:
        params = {
            **params,
            **{k: m.Param(value=v, context_only=True) for k, v in _defaults(context, glob).items()},
        }
    op = m.Operation(version=1.1, hub_ref=hook.hub_ref, params=params or None)
    component, where = resolve_component(op, context.source, context.base_dir)
    return with_ignored(LoadedSpec(context.source, op, component, where, context.base_dir))


# --------------------------------------------------------------------------- running
def _hook_plan(spec: LoadedSpec, home: Path, where: str) -> Plan:
    """The hook's plan; a param its component does not take is named as the hook's."""
    try:
        return compile_plan(spec, paths=run_paths(home))
    except SpecError as exc:
        if exc.field is not None and exc.field.startswith("params.") and exc.file == spec.source:
            exc.field = f"{where}.{exc.field}"
        raise


async def _run_one(
    plan: Plan,
    index: int,
    context: HookContext,
    *,
    home: Path,
    journal: Journal,
    executor: Executor | None,
    grace: float,
) -> tuple[str, str, str | None]:
    """Run one hook's sweep to its end: ``(sweep id, state, reason)``. Cancelled, it is
    stopped first (SIGTERM, ``grace``, SIGKILL), then the cancellation goes on."""
    settings = SweepSettings(
        home=home,
        spec_path=plan.spec.component_source,
        concurrency=1,
        grace=grace,
        description=f"hook {index} of {context.name or context.sweep_id[:12]}",
        parent_id=context.sweep_id,
        node=f"hook:{index}",
    )
    controller = build_sweep(plan, settings, journal=journal, executor=executor)
    done = anyio.Event()
    outcome: list[tuple[str, str, str | None]] = []

    async def drive() -> None:
        with anyio.CancelScope(shield=True):  # stopped by request_stop, never torn down
            result = await controller.run()
        runs = list(result.runs)
        reason = (runs[0].reason if runs and runs[0].reason else None) or result.reason
        if runs and runs[0].stderr_tail and result.state is not SweepState.SUCCEEDED:
            reason = f"{reason}: {runs[0].stderr_tail[-1].strip()[:_TAIL_CHARS]}"
        outcome.append((result.sweep_id, result.state.value, reason))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            controller.request_stop("interrupted", grace=grace)
            raise
    return outcome[0]


async def _journal_failure(
    journal: Journal, index: int, hook: m.Hook, context: HookContext, reason: str
) -> str:
    """A hook that could not start is still a failed sweep of the operation (so ``show``
    lists it, with why)."""
    sweep_id = uuid.uuid4().hex
    journal.add_sweep(
        sweep_id,
        name=hook.hub_ref,
        description=f"hook {index} of {context.name or context.sweep_id[:12]}",
        tags=[],
        spec_path=hook.hub_ref,
        kind="single",
        total=1,
        concurrency=1,
        pid=os.getpid(),
        seed=None,
        parent_id=context.sweep_id,
        node=f"hook:{index}",
    )
    journal.set_sweep_state(sweep_id, SweepState.FAILED.value, reason, finished=True)
    await journal.flush()
    return sweep_id


async def run_hooks(
    hooks: Sequence[m.Hook],
    context: HookContext,
    *,
    home: Path,
    journal: Journal,
    executor: Executor | None = None,
    grace: float = 10.0,
    err: IO[str] | None = None,
    where: str = "hooks",
) -> list[HookOutcome]:
    """Run the operation's hooks that its final status triggers, one after another (see the
    module's docstring); ``where`` names them in messages (``hooks``, ``run.operations[i]
    .hooks``). Never raises for a hook's failure: it is reported on ``err``, one line, and
    journaled; the outcomes say what became of each."""
    await journal.flush()  # the operation's times, read back from the journal
    glob = _globals(context, journal)
    scope = _render_context(context, glob)
    renderer = Renderer()
    outcomes: list[HookOutcome] = []
    for index, hook in enumerate(hooks):
        at = f"{where}[{index}]"
        if not triggered(hook, context.status):
            outcomes.append(HookOutcome(index, hook.hub_ref, "not_triggered"))
            continue
        _note_ignored(hook, at, err)
        try:
            if not _condition_holds(hook, at, renderer, scope):
                outcomes.append(HookOutcome(index, hook.hub_ref, "condition_false"))
                continue
            params = _rendered_params(hook, at, renderer, scope)
            plan = _hook_plan(_hook_spec(hook, params, context, glob), home, at)
            sweep_id, state, reason = await _run_one(
                plan, index, context, home=home, journal=journal, executor=executor, grace=grace
            )
        except OrchestratorError as exc:
            if isinstance(exc, SpecError):
                exc.with_file(context.source)
            reason = " ".join(str(exc).split())
            sweep_id = await _journal_failure(journal, index, hook, context, reason)
            outcomes.append(_failed(index, hook, sweep_id, reason, err, ran=False))
            continue
        if state != SweepState.SUCCEEDED.value:
            outcomes.append(_failed(index, hook, sweep_id, reason, err, state=state))
            continue
        outcomes.append(HookOutcome(index, hook.hub_ref, state, sweep_id, reason, ran=True))
    return outcomes


def _note_ignored(hook: m.Hook, where: str, err: IO[str] | None) -> None:
    """A hook's settings for Polyaxon's cluster are said once, as other ignored sections."""
    if err is None:
        return
    for name in ("connection", "presets", "queue", "namespace"):
        if getattr(hook, name) is not None:
            err.write(f"note: {where}.{name}: no local meaning, ignored\n")


def _failed(
    index: int,
    hook: m.Hook,
    sweep_id: str,
    reason: str | None,
    err: IO[str] | None,
    *,
    state: str = SweepState.FAILED.value,
    ran: bool = True,
) -> HookOutcome:
    """Say on ``err`` that a hook failed (one line; the operation's state stays as it was)."""
    if err is not None:
        why = " ".join((reason or "no reason given").split())
        err.write(f"hook {index} ({hook.hub_ref}) {state}: {why} (sweep {sweep_id[:12]})\n")
        err.flush()
    return HookOutcome(index, hook.hub_ref, state, sweep_id, reason, ran=ran)


async def hooks_after_sweep(
    controller: SweepController, result: SweepResult, err: IO[str] | None
) -> list[HookOutcome]:
    """A top-level sweep's ``hooks`` once it ended (the command line's and the daemon's
    sweeps); they never change its state."""
    spec = controller.plan.spec
    hooks = spec.operation.hooks or spec.component.hooks
    if not hooks:
        return []
    runs = list(result.runs) if controller.total == 1 else []
    context = HookContext(
        sweep_id=result.sweep_id,
        name=controller.name,
        status=result.state.value,
        inputs=dict(runs[0].spec.params) if len(runs) == 1 else {},
        outputs=dict(runs[0].outputs) if len(runs) == 1 else {},
        reason=result.reason,
        base_dir=spec.base_dir,
        source=spec.source,
        kind="matrix" if controller.plan.expansion is not None else "job",
    )
    return await run_hooks(
        hooks,
        context,
        home=controller.home,
        journal=controller.journal,
        executor=controller.executor,
        grace=controller.grace,
        err=err,
    )
