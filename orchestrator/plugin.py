"""Everything a plugin author needs, from one module (pinned by ``tests/test_plugin_api.py``).

    from orchestrator.plugin import hookimpl, UseCached, RunState

    @hookimpl
    def on_metric(event, ctx): ...

Hooks and answers (:data:`hookimpl`, :class:`UseCached`, :class:`Skip`, :class:`Defer`), the
context handed to every hook (:class:`PluginContext`, :class:`RunView`), the events and states
(:class:`RunStateChanged`, :class:`RunState`...), and the testing helpers
(:func:`run_fake_sweep`, :class:`FakeExecutor`, :class:`FakeRun`, :func:`capture_events`, loaded
on first use), and what a search algorithm implements (:class:`Searcher`, :class:`Suggestion`,
:class:`Observation`, :class:`Past`, :data:`WAIT`, :data:`DONE`, :func:`objective`; registered
under the entry point group ``orchestrator.searchers``). Modules elsewhere in ``orchestrator``
are internal and may change; what is listed here changes only with :data:`PLUGIN_API_VERSION`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.engine.context import PluginContext, RunView
from orchestrator.engine.events import (
    EVENT_TYPES,
    Event,
    LogLine,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.states import TERMINAL, RunState, SweepState
from orchestrator.exceptions import PluginError
from orchestrator.hooks import (
    CACHE_HIT_REASON,
    PLUGIN_API_VERSION,
    Defer,
    Skip,
    UseCached,
    hookimpl,
)
from orchestrator.search.base import (
    DONE,
    WAIT,
    Done,
    Observation,
    Past,
    Searcher,
    Suggestion,
    Wait,
    objective,
)

if TYPE_CHECKING:
    from orchestrator.testing import FakeExecutor, FakeRun, capture_events, run_fake_sweep

__all__ = [
    "CACHE_HIT_REASON",
    "DONE",
    "EVENT_TYPES",
    "PLUGIN_API_VERSION",
    "TERMINAL",
    "WAIT",
    "Defer",
    "Done",
    "Event",
    "FakeExecutor",
    "FakeRun",
    "LogLine",
    "MetricReported",
    "Observation",
    "Past",
    "PluginContext",
    "PluginError",
    "RunCreated",
    "RunState",
    "RunStateChanged",
    "RunView",
    "Searcher",
    "Skip",
    "Suggestion",
    "SweepFinished",
    "SweepStarted",
    "SweepState",
    "SweepStopping",
    "UseCached",
    "Wait",
    "capture_events",
    "hookimpl",
    "objective",
    "run_fake_sweep",
]

_TESTING = {"FakeExecutor", "FakeRun", "capture_events", "run_fake_sweep"}


def __getattr__(name: str) -> Any:
    if name in _TESTING:
        from orchestrator import testing

        return getattr(testing, name)
    raise AttributeError(f"module 'orchestrator.plugin' has no attribute {name!r}")
