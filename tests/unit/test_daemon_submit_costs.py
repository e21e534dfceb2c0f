"""What a daemon pays once instead of per submission: its start-up heap out of the cyclic
collector's sight, one Jinja sandbox per set of lenient names, and the plugins' observer plan
worked out per plugin host rather than per sweep."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import MetricReported, RunCreated, SweepFinished
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.exceptions import SpecError
from orchestrator.plugin import hookimpl
from orchestrator.spec.templating import Renderer


# ---------------------------------------------------------------- the heap of a daemon, of a run
def test_settle_heap_freezes_what_start_up_left_after_collecting_its_garbage() -> None:
    """In a process of its own (freezing pytest's heap would outlive this test)."""
    script = textwrap.dedent("""
        import gc, weakref
        from orchestrator.heap import GC_YOUNG_THRESHOLD, settle_heap

        class Node:
            pass

        cycle = Node()
        cycle.me = cycle  # garbage only the cyclic collector frees
        gone = weakref.ref(cycle)
        del cycle
        kept = [Node() for _ in range(100)]
        settle_heap()
        assert gone() is None, "garbage is collected, not frozen"
        assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700, gc.get_threshold()
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _in_a_process(script: str) -> None:
    """Run ``script`` in a fresh interpreter (settling or not, pytest's heap stays as it is);
    it prints ``ok`` on stderr at its end."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("ok"), done.stderr


def _one_run(tmp_path: Path) -> tuple[str, str]:
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "version: 1.1\nkind: operation\n"
        "component:\n  run: {kind: job, container: {command: [/bin/true]}}\n"
    )
    return str(spec), str(tmp_path / "home")


def test_the_orchestrator_command_settles_its_heap_before_the_runs(tmp_path: Path) -> None:
    """``orchestrator run`` (the program's entry point) freezes what it was set up with
    before its runs: at its end the interpreter no longer walks all of it (60-100 ms per
    invocation on a small machine)."""
    spec, home = _one_run(tmp_path)
    _in_a_process(f"""
        import gc, sys
        from orchestrator.cli import program
        from orchestrator.heap import GC_YOUNG_THRESHOLD
        sys.argv = ["orchestrator", "run", {spec!r}, "--home", {home!r}, "--json"]
        assert program() == 0
        assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD, gc.get_threshold()
        print("ok", file=sys.stderr)
    """)


def test_the_command_line_run_as_a_library_leaves_its_hosts_heap_alone(tmp_path: Path) -> None:
    """``main`` called by other code (a test, a notebook) runs the sweep without freezing
    its host's objects or changing its collector's thresholds."""
    spec, home = _one_run(tmp_path)
    _in_a_process(f"""
        import gc, io, sys
        from orchestrator.cli import main
        before = gc.get_threshold()
        code = main(["run", {spec!r}, "--home", {home!r}, "--json"],
                    out=io.StringIO(), err=io.StringIO())
        assert code == 0, code
        assert gc.get_freeze_count() == 0, gc.get_freeze_count()
        assert gc.get_threshold() == before, gc.get_threshold()
        print("ok", file=sys.stderr)
    """)


# ---------------------------------------------------------------- one sandbox per lenient set
def test_renderers_with_the_same_lenient_names_share_one_sandbox() -> None:
    assert Renderer({"a", "b"}).env is Renderer(["b", "a"]).env
    assert Renderer().env is Renderer(()).env
    assert Renderer({"a"}).env is not Renderer().env


def test_a_shared_sandbox_keeps_each_renderers_lenient_names_apart() -> None:
    lenient = Renderer({"x"})
    strict = Renderer()
    template = "[{% for v in x %}{{ v }}{% endfor %}]{{ x }}"
    assert lenient.render(template, {}, field="f") == "[]"
    with pytest.raises(SpecError, match="undefined variable 'x'"):
        strict.render(template, {}, field="f")
    assert Renderer({"x"}).render(template, {}, field="f") == "[]", "still lenient afterwards"


# ---------------------------------------------------------------- the observer plan
class Metrics:
    @hookimpl
    async def on_metric(self, event: MetricReported) -> None:
        pass


class Ends:
    @hookimpl
    async def on_run_created(self, event: RunCreated) -> None:
        pass

    @hookimpl
    async def on_sweep_finished(self, event: SweepFinished) -> None:
        pass


def test_the_observer_plan_is_worked_out_once_per_host() -> None:
    host = PluginHost()
    assert host.register(Metrics(), "metrics")
    plan = host.observer_plan()
    assert plan == {"metrics": (MetricReported,)}
    assert host.observer_plan() is plan, "not worked out again for the next sweep"


def test_a_plugin_registered_later_is_in_the_next_plan_and_observes() -> None:
    host = PluginHost()
    assert host.register(Metrics(), "metrics")
    host.observer_plan()
    assert host.register(Ends(), "ends")
    assert host.observer_plan() == {
        "metrics": (MetricReported,),
        "ends": (RunCreated, SweepFinished),
    }

    async def subscribed() -> list[frozenset[type]]:
        bus = EventBus("s")
        scope = host.scope()
        scope.disabled.add("metrics")  # switched off in this sweep: no subscription
        async with anyio.create_task_group() as tg:
            subscriptions = await scope.start_observers(bus, tg, ctx=_Ctx())
            await bus.close()
        return [s.types for s in subscriptions]

    assert anyio.run(subscribed) == [frozenset({RunCreated, SweepFinished})]


class _Ctx:
    """What ``observes`` is asked with; these plugins do not implement it."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)
