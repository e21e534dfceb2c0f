"""Hooks for real: an operation's sweep runs (real subprocesses), then its hooks run as 1-run
sweeps of their own from a local hub, each a real process writing what it received to a
marker file; a failing hook is reported and journaled and leaves the operation as it was."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.op_hooks import HookContext, HookOutcome, run_hooks
from orchestrator.engine.states import SweepState
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from tests.procwait import gone_within

pytestmark = pytest.mark.anyio

PY = json.dumps(sys.executable)

#: The hub's components, each running a script of the same name.
SCRIPTS = {
    # Writes the status its operation ended with (Polyaxon's default ``status`` param) and
    # its ``note`` param to the file ``marker``.
    "marker": "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))",
    "broken": "import sys; sys.stderr.write('hook broke'); sys.exit(3)",
}
COMPONENTS = {
    "marker": """
inputs:
  - {name: marker, type: str}
  - {name: note, type: str, value: "", isOptional: true}
""",
    "broken": "",
}
ARGS = {"marker": '["{{ marker }}", "{{ status }}", "{{ note }}"]', "broken": "[]"}
#: The operation: one run that reports ``loss`` (a declared output) and exits with ``code``.
OPERATION_SCRIPT = """
import json, sys
print(json.dumps({"metrics": {"loss": 0.25}}), flush=True)
sys.exit(int(sys.argv[1]))
"""


def _component(name: str, script: Path, args: str) -> str:
    return (
        f"version: 1.1\nkind: component\nname: {name}\n{COMPONENTS.get(name, '')}\n"
        f"run:\n  kind: job\n  container:\n    command: [{PY}, {json.dumps(str(script))}]\n"
        f"    args: {args}\n"
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Operation:
    """A real operation's sweep, ended, and what its hooks need to know of it."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        hub = tmp / "hub"
        hub.mkdir()
        for name, code in SCRIPTS.items():
            script = tmp / f"{name}.py"
            script.write_text(code)
            (hub / f"{name}.yaml").write_text(_component(name, script, ARGS[name]))
        monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))
        self.journal = Journal(self.home / "journal.sqlite")
        self.err = io.StringIO()

    async def run(self, code: int) -> HookContext:
        script = self.tmp / "op.py"
        script.write_text(OPERATION_SCRIPT)
        spec = self.tmp / "op.yaml"
        spec.write_text(
            "version: 1.1\nkind: operation\nname: train\n"
            f"params: {{code: {{value: {code}}}}}\ncomponent:\n"
            "  inputs: [{name: code, type: int}]\n  outputs: [{name: loss, type: float}]\n"
            "  run:\n    kind: job\n    container:\n"
            f"      command: [{PY}, {json.dumps(str(script))}]\n"
            "      args: ['{{ code }}']\n"
        )
        plan = compile_plan(load_spec(spec), paths=run_paths(self.home))
        settings = SweepSettings(home=self.home, spec_path=str(spec), concurrency=1, grace=5.0)
        result = await build_sweep(plan, settings, journal=self.journal).run()
        (run,) = result.runs
        return HookContext(
            sweep_id=result.sweep_id,
            name="train",
            status=result.state.value,
            inputs=dict(run.spec.params),
            outputs=dict(run.outputs),
            reason=result.reason,
            base_dir=self.tmp,
            source=str(spec),
        )

    async def hooks(self, context: HookContext, *hooks: dict[str, Any]) -> list[HookOutcome]:
        decoded = [decode(h, m.Hook) for h in hooks]
        return await run_hooks(
            decoded, context, home=self.home, journal=self.journal, grace=5.0, err=self.err
        )

    def marker(self, name: str) -> str | None:
        path = self.tmp / name
        return path.read_text() if path.exists() else None

    def state_of(self, sweep_id: str) -> str:
        return self.journal.find_sweep(sweep_id).state

    def hook_sweeps(self, sweep_id: str) -> list[tuple[str | None, str, str | None]]:
        return [(row.node, row.state, row.reason) for row in self.journal.children_of(sweep_id)]


@pytest.fixture
async def operation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    op = Operation(tmp_path, monkeypatch)
    try:
        yield op
    finally:
        op.journal.close()


def _marker_hook(trigger: str | None, name: str, **extra: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {"hubRef": "marker", "params": {"marker": "", **extra.pop("params", {})}}
    if trigger is not None:
        hook["trigger"] = trigger
    hook["params"]["marker"] = name
    return {**hook, **extra}


async def test_a_hook_on_succeeded_and_one_on_failed(operation: Operation) -> None:
    tmp = operation.tmp
    hooks = (
        _marker_hook("succeeded", str(tmp / "on_succeeded"), params={"note": "{{ loss }}"}),
        _marker_hook("failed", str(tmp / "on_failed"), params={"note": "{{ globals.status }}"}),
    )
    succeeded = await operation.run(0)
    outcomes = await operation.hooks(succeeded, *hooks)
    assert [o.state for o in outcomes] == ["succeeded", "not_triggered"]
    assert operation.marker("on_succeeded") == "succeeded 0.25"  # the operation's output
    assert operation.marker("on_failed") is None

    failed = await operation.run(1)
    outcomes = await operation.hooks(failed, *hooks)
    assert [o.state for o in outcomes] == ["not_triggered", "succeeded"]
    assert operation.marker("on_failed") == "failed failed"
    # Each hook's run is a 1-run sweep of the operation's, named hook:<index>.
    assert operation.hook_sweeps(failed.sweep_id) == [("hook:1", "succeeded", None)]
    assert operation.state_of(failed.sweep_id) == "failed"


async def test_done_runs_for_any_final_state(operation: Operation) -> None:
    for code, status in ((0, "succeeded"), (1, "failed")):
        context = await operation.run(code)
        marker = str(operation.tmp / f"done_{code}")
        outcomes = await operation.hooks(
            context, _marker_hook("done", marker), _marker_hook(None, marker + "_untriggered")
        )
        assert [o.state for o in outcomes] == ["succeeded", "succeeded"]
        assert operation.marker(f"done_{code}") == status
        assert operation.marker(f"done_{code}_untriggered") == status


async def test_a_failing_hook_is_reported_and_leaves_the_operation_as_it_was(
    operation: Operation,
) -> None:
    context = await operation.run(0)
    marker = str(operation.tmp / "after")
    outcomes = await operation.hooks(
        context, {"hubRef": "broken", "trigger": "succeeded"}, _marker_hook("succeeded", marker)
    )
    assert [o.state for o in outcomes] == ["failed", "succeeded"]  # the next hook still runs
    lines = operation.err.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hook 0 (broken) failed: ")
    assert "hook broke" in lines[0]
    assert operation.state_of(context.sweep_id) == "succeeded"
    nodes = operation.hook_sweeps(context.sweep_id)
    assert [(node, state) for node, state, _ in nodes] == [
        ("hook:0", "failed"),
        ("hook:1", "succeeded"),
    ]


async def test_a_hook_that_cannot_start_is_reported_and_journaled(operation: Operation) -> None:
    context = await operation.run(0)
    outcomes = await operation.hooks(
        context,
        {"hubRef": "missing", "trigger": "succeeded"},
        _marker_hook("succeeded", "x", params={"unknown": 1}),
        _marker_hook("succeeded", "y", conditions="{{ nope > 1 }}"),
    )
    assert [(o.state, o.ran) for o in outcomes] == [("failed", False)] * 3
    lines = operation.err.getvalue().splitlines()
    assert len(lines) == 3
    assert "component 'missing' not found in hub folder" in lines[0]
    assert "hooks[1].params.unknown: no input or output named 'unknown'" in lines[1]
    assert "hooks[2].conditions: 'nope' is undefined" in lines[2]
    nodes = operation.hook_sweeps(context.sweep_id)
    assert [(node, state) for node, state, _ in nodes] == [
        ("hook:0", "failed"),
        ("hook:1", "failed"),
        ("hook:2", "failed"),
    ]
    assert operation.state_of(context.sweep_id) == "succeeded"


async def test_conditions_read_the_operations_context(operation: Operation) -> None:
    context = await operation.run(0)
    tmp = operation.tmp
    outcomes = await operation.hooks(
        context,
        _marker_hook(
            "succeeded", str(tmp / "low"), conditions="{{ loss < 0.5 }}", connection="slack"
        ),
        _marker_hook("succeeded", str(tmp / "high"), conditions="{{ loss > 0.5 }}"),
        _marker_hook(
            None,
            str(tmp / "status"),
            conditions="{{ globals.status == 'succeeded' and code == 0 }}",
        ),
    )
    assert [o.state for o in outcomes] == ["succeeded", "condition_false", "succeeded"]
    assert operation.marker("low") == "succeeded"
    assert operation.marker("high") is None  # not run: no process, no sweep
    assert operation.err.getvalue() == "note: hooks[0].connection: no local meaning, ignored\n"
    assert [node for node, _, _ in operation.hook_sweeps(context.sweep_id)] == ["hook:0", "hook:2"]


async def test_disable_defaults_leaves_the_context_out(operation: Operation) -> None:
    context = await operation.run(0)
    outcomes = await operation.hooks(
        context, _marker_hook("succeeded", str(operation.tmp / "bare"), disableDefaults=True)
    )
    # The component reads ``status``, which nobody gives it now: a one-line failure.
    assert outcomes[0].state == "failed"
    assert "status" in operation.err.getvalue()
    assert operation.state_of(context.sweep_id) == SweepState.SUCCEEDED.value


def test_hooks_are_cancellable_without_leaving_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling run_hooks (the orchestrator interrupted) stops the hook's process before
    the cancellation goes on."""
    hub = tmp_path / "hub"
    hub.mkdir()
    started = tmp_path / "started"
    os.mkfifo(started)  # the hook writes its pid here once running: the test waits on it
    script = tmp_path / "sleeper.py"
    script.write_text(
        f"import os, time\nwith open({str(started)!r}, 'w') as f:\n    f.write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    (hub / "sleeper.yaml").write_text(_component("sleeper", script, "[]"))
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))
    pids: list[int] = []

    async def main() -> None:
        journal = Journal(tmp_path / "home" / "journal.sqlite")
        try:
            context = HookContext("s" * 32, "op", "succeeded", {}, {}, None, tmp_path, "op.yaml")
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:

                    async def hooks() -> None:
                        await run_hooks(
                            [m.Hook(hub_ref="sleeper")],
                            context,
                            home=tmp_path / "home",
                            journal=journal,
                            grace=1.0,
                        )
                        # Ended without writing its pid (it failed): unblock the reader.
                        fd = os.open(started, os.O_WRONLY | os.O_NONBLOCK)
                        os.write(fd, b"0")
                        os.close(fd)

                    tg.start_soon(hooks)
                    pids.append(int(await anyio.to_thread.run_sync(started.read_text)))
                    tg.cancel_scope.cancel()
            (row,) = journal.children_of(context.sweep_id)
            assert row.state == "stopped"
        finally:
            journal.close()

    anyio.run(main)
    assert pids[0] != 0, "the hook ended before it ran"
    assert gone_within(pids[0], 30)
