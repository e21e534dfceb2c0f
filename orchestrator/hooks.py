"""The hook API for plugin authors: what a plugin can observe and decide, and how it is called.

Declare an implementation with :data:`hookimpl` on a module or object and register it under the
``orchestrator.plugins`` entry-point group (``cache = "my_package.cache"``); the built-in plugins
use the same group. Two kinds of hooks:

* **Observers** (``on_sweep_started``, ``on_run_created``, ``on_run_state_changed``,
  ``on_log_line``, ``on_metric``, ``on_sweep_finished``) receive events in order, through the
  plugin's own bounded stream and task: a slow observer slows nobody until its stream is full.
  ``observes(ctx)`` may narrow them per sweep; events nobody observes are not delivered.
* **Decisions**, awaited inline, first non-None answer wins: ``decide_before_run`` (answer
  :class:`UseCached`, :class:`Skip` or :class:`Defer`) and ``on_run_finished``.

Implementations may be plain or ``async`` functions and take any subset of the arguments a hook
declares (pluggy checks the names when the plugin registers). Each call has a timeout; a plugin
that raises, hangs or declares a hook wrongly is reported by name and switched off for the
sweep, or stops it with ``--strict-plugins``. Observers act on the sweep through ``ctx``
(:class:`orchestrator.engine.context.PluginContext`): ``ctx.stop_run``, ``ctx.stop_sweep``,
read access to runs, metrics and outputs, and ``ctx.per_sweep`` for state that must not outlive
the sweep. Plugin authors import all of this from :mod:`orchestrator.plugin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pluggy

__all__ = [
    "CACHE_HIT_REASON",
    "PLUGIN_API_VERSION",
    "Defer",
    "Skip",
    "UseCached",
    "hookimpl",
    "hookspec",
]

#: Bumped when a hook changes incompatibly. A plugin may declare the version it was written
#: for as ``ORCHESTRATOR_PLUGIN_API = 1``; a different one is refused with a clear message.
PLUGIN_API_VERSION = 1
#: The reason of a run answered from the cache (``UseCached``): shown as ``cached``.
CACHE_HIT_REASON = "cache_hit"

hookspec = pluggy.HookspecMarker("orchestrator")
#: Mark a plugin's hook implementations: ``@hookimpl def on_metric(event, ctx): ...``.
hookimpl = pluggy.HookimplMarker("orchestrator")


@dataclass(frozen=True)
class UseCached:
    """Answer of ``decide_before_run``: end the run ``succeeded`` (reason ``cache_hit``) with
    the outputs, metrics and logs of ``source_run_id``."""

    source_run_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    reason: str = CACHE_HIT_REASON


@dataclass(frozen=True)
class Skip:
    """Answer of ``decide_before_run``: do not run it; it ends ``skipped`` with ``reason``."""

    reason: str


@dataclass(frozen=True)
class Defer:
    """Answer of ``decide_before_run``: ask again once ``until`` is set (an identical run is in
    flight). The run keeps its slot while it waits."""

    until: anyio.Event
    reason: str = "waiting for an identical run"


class OrchestratorHooks:
    """Hook specifications. Every argument is optional for an implementation."""

    @hookspec(historic=True)
    def orchestrator_configure(self, config: Any) -> None:
        """Once, before anything runs: ``config`` has ``home``, ``spec`` and the CLI options."""

    # ------------------------------------------------------------------ observers
    @hookspec
    def on_sweep_started(self, event: Any, ctx: Any) -> None:
        """A sweep started (``SweepStarted``)."""

    @hookspec
    def on_run_created(self, event: Any, ctx: Any) -> None:
        """A run was rendered from the matrix (``RunCreated``: params, argv)."""

    @hookspec
    def on_run_state_changed(self, event: Any, ctx: Any) -> None:
        """A run changed state (``RunStateChanged``: previous, state, reason, exit code)."""

    @hookspec
    def on_log_line(self, event: Any, ctx: Any) -> None:
        """A line of a run's stdout or stderr (``LogLine``)."""

    @hookspec
    def on_metric(self, event: Any, ctx: Any) -> None:
        """A run reported metrics (``MetricReported``: step, values)."""

    @hookspec
    def on_sweep_stopping(self, event: Any, ctx: Any) -> None:
        """A stop was decided (``SweepStopping``: reason, final_state)."""

    @hookspec
    def on_sweep_finished(self, event: Any, ctx: Any) -> None:
        """A sweep ended (``SweepFinished``: state, reason, counts by state)."""

    @hookspec
    def observes(self, ctx: Any) -> Iterable[str] | None:
        """Once per sweep, before it starts: the observer hooks this plugin wants in it
        (``["on_metric"]``); None: every one it implements. A plugin with nothing to watch
        in a sweep (early stopping without rules) answers ``[]``: its events are then not
        even delivered, so it costs that sweep nothing per run."""

    # ------------------------------------------------------------------ decisions
    @hookspec(firstresult=True)
    def decide_before_run(self, run: Any, ctx: Any) -> UseCached | Skip | Defer | None:
        """Before a run starts: return :class:`UseCached`, :class:`Skip`, :class:`Defer` or
        None (run it). ``run`` has ``id``, ``index``, ``spec`` (params, argv, env...)."""

    @hookspec
    def on_run_finished(self, run: Any, ctx: Any) -> None:
        """After a run reached a final state, however it got there (executed, cached,
        skipped, stopped before it started): ``run.state``, ``run.outputs``, ``run.metrics``."""


#: Observer hook name for each event type name.
OBSERVERS = {
    "SweepStarted": "on_sweep_started",
    "RunCreated": "on_run_created",
    "RunStateChanged": "on_run_state_changed",
    "LogLine": "on_log_line",
    "MetricReported": "on_metric",
    "SweepStopping": "on_sweep_stopping",
    "SweepFinished": "on_sweep_finished",
}
