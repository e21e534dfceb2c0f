"""The plugin authors' surface, ``orchestrator.plugin``, is pinned: a change here is a
deliberate change of the plugin API (and of ``PLUGIN_API_VERSION`` when incompatible)."""

from __future__ import annotations

import subprocess
import sys

import orchestrator.plugin as api
from orchestrator import hooks, testing
from orchestrator.engine import context, events, states
from orchestrator.search import base as search


def test_the_surface_is_pinned() -> None:
    assert api.__all__ == sorted(api.__all__, key=lambda n: (not n.isupper(), n))
    assert set(api.__all__) == {
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
    }
    assert api.PLUGIN_API_VERSION == 1


def test_each_name_is_the_real_thing() -> None:
    assert api.hookimpl is hooks.hookimpl
    assert (api.UseCached, api.Skip, api.Defer) == (hooks.UseCached, hooks.Skip, hooks.Defer)
    assert (api.PluginContext, api.RunView) == (context.PluginContext, context.RunView)
    assert (api.RunState, api.SweepState, api.TERMINAL) == (
        states.RunState,
        states.SweepState,
        states.TERMINAL,
    )
    assert (api.Searcher, api.Suggestion, api.WAIT, api.DONE) == (
        search.Searcher,
        search.Suggestion,
        search.WAIT,
        search.DONE,
    )
    assert api.EVENT_TYPES == events.EVENT_TYPES
    assert {t.__name__ for t in api.EVENT_TYPES} <= set(api.__all__)
    assert api.run_fake_sweep is testing.run_fake_sweep
    assert api.FakeExecutor is testing.FakeExecutor


def test_every_observer_hook_has_its_event_type() -> None:
    assert set(hooks.OBSERVERS) == {t.__name__ for t in api.EVENT_TYPES}


def test_importing_the_surface_does_not_load_the_testing_helpers() -> None:
    code = (
        "import sys, orchestrator.plugin; m = sys.modules; "
        "print('orchestrator.testing' in m, 'orchestrator.executors.local' in m)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
