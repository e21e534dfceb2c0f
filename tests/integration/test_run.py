"""Running sweeps for real: subprocesses, process groups, signals, logs, metrics, the journal."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.events import Event, LogLine, MetricReported
from orchestrator.engine.records import SweepResult
from orchestrator.engine.states import RunState, SweepState
from orchestrator.engine.sweep import SweepController
from orchestrator.executors.local import MAX_LINE
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from tests.procwait import gone_within

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
PY = sys.executable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spec_text(
    argv: list[str],
    *,
    values: list[dict[str, Any]] | None = None,
    inputs: str = "[]",
    outputs: str = "[]",
    concurrency: int | None = None,
    env: str = "[]",
) -> str:
    lines = ["version: 1.1", "kind: operation"]
    if values is not None:
        conc = f", concurrency: {concurrency}" if concurrency else ""
        lines.append(f"matrix: {{kind: mapping{conc}, values: {json.dumps(values)}}}")
    lines += [
        "component:",
        f"  inputs: {inputs}",
        f"  outputs: {outputs}",
        "  run:",
        "    kind: job",
        "    container:",
        f"      command: {json.dumps(argv)}",
        f"      env: {env}",
    ]
    return "\n".join(lines) + "\n"


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.journal = Journal(self.home / "journal.sqlite")
        self.events: list[Event] = []

    def controller(self, text: str, *, concurrency: int = 2, grace: float = 5.0) -> SweepController:
        spec = self.tmp / f"{uuid.uuid4().hex[:8]}.yaml"
        spec.write_text(text)
        plan = compile_plan(load_spec(spec), paths=run_paths(self.home))
        settings = SweepSettings(
            home=self.home, spec_path=str(spec), concurrency=concurrency, grace=grace
        )
        return build_sweep(plan, settings, journal=self.journal)

    async def run(
        self, controller: SweepController, on_event: Callable[[Event], None] | None = None
    ) -> SweepResult:
        sub = controller.bus.subscribe([LogLine, MetricReported], buffer=100_000)

        async def consume() -> None:
            async with sub.receive:
                async for event in sub.receive:
                    self.events.append(event)
                    if on_event:
                        on_event(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(60):
                result = await controller.run()
            await controller.bus.close()
        return result

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        self.journal.flush_sync()
        with sqlite3.connect(self.journal.path) as conn:
            return list(conn.execute(sql, params))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.journal.close()


async def test_concurrency_is_never_exceeded(harness: Harness, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.txt"
    text = spec_text(
        [PY, str(COMPONENTS / "stamp.py"), str(stamps), "0.3"], values=[{"i": i} for i in range(8)]
    )
    result = await harness.run(harness.controller(text, concurrency=3))
    assert result.state is SweepState.SUCCEEDED
    intervals = [tuple(map(float, line.split())) for line in stamps.read_text().splitlines()]
    assert len(intervals) == 8
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    live = peak = 0
    for _, delta in points:
        live += delta
        peak = max(peak, live)
    assert peak == 3


async def test_child_ignoring_sigterm_is_killed_after_grace(harness: Harness) -> None:
    controller = harness.controller(spec_text([PY, str(COMPONENTS / "ignore_term.py")]), grace=0.5)
    stop_at: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, LogLine) and event.line == "ready" and not stop_at:
            stop_at.append(time.monotonic())
            controller.request_stop("test stop")

    result = await harness.run(controller, on_event)
    took = time.monotonic() - stop_at[0]
    (run,) = result.runs
    assert result.state is SweepState.STOPPED
    assert run.state is RunState.STOPPED
    assert run.reason == "test stop"
    assert run.exit_code == -signal.SIGKILL
    assert 0.5 <= took < 5
    states = [
        r[0]
        for r in harness.rows(
            "SELECT to_state FROM transitions WHERE run_id = ? ORDER BY id", run.id
        )
    ]
    assert states == ["created", "queued", "starting", "running", "stopping", "stopped"]


async def test_grandchildren_die_when_their_run_is_stopped(
    harness: Harness, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gpid"
    controller = harness.controller(
        spec_text([PY, str(COMPONENTS / "grandchild.py"), str(pid_file), "wait"]), grace=2
    )

    def on_event(event: Event) -> None:
        if isinstance(event, LogLine) and event.line == "ready":
            controller.request_stop("test stop")

    result = await harness.run(controller, on_event)
    assert result.runs[0].state is RunState.STOPPED
    assert gone_within(int(pid_file.read_text()), 10)


async def test_grandchildren_die_when_their_run_exits(harness: Harness, tmp_path: Path) -> None:
    pid_file = tmp_path / "gpid"
    started = time.monotonic()
    result = await harness.run(
        harness.controller(
            spec_text([PY, str(COMPONENTS / "grandchild.py"), str(pid_file), "exit"])
        )
    )
    assert result.state is SweepState.SUCCEEDED
    assert time.monotonic() - started < 10, "a grandchild holding the pipes must not hang us"
    assert gone_within(int(pid_file.read_text()), 10)


async def test_missing_command_fails_that_run_only(harness: Harness) -> None:
    text = spec_text(
        ["{{ cmd }}", "-c", "pass"],
        inputs="[{name: cmd, type: str}]",
        values=[{"cmd": "definitely-not-a-command-xyz"}, {"cmd": PY}],
    )
    result = await harness.run(harness.controller(text))
    bad, good = result.runs
    assert bad.state is RunState.FAILED
    assert bad.reason == "command not found: 'definitely-not-a-command-xyz'"
    assert good.state is RunState.SUCCEEDED
    assert result.state is SweepState.FAILED


async def test_plain_string_command_gets_a_hint(harness: Harness) -> None:
    result = await harness.run(harness.controller(spec_text(["echo hello world"])))
    assert "write a list, or [/bin/sh, -c, ...]" in (result.runs[0].reason or "")


async def test_ten_megabyte_line_without_newline(harness: Harness) -> None:
    result = await harness.run(
        harness.controller(spec_text([PY, str(COMPONENTS / "output.py"), "bigline"]))
    )
    (run,) = result.runs
    assert run.state is RunState.SUCCEEDED
    lines = [e for e in harness.events if isinstance(e, LogLine)]
    assert [len(e.line) for e in lines] == [MAX_LINE] * 10
    log = harness.home / "runs" / run.id / "stdout.log"
    assert log.stat().st_size == 10 * 1024 * 1024


async def test_non_utf8_output_is_replaced_in_events_and_kept_in_logs(harness: Harness) -> None:
    result = await harness.run(
        harness.controller(spec_text([PY, str(COMPONENTS / "output.py"), "binary"]))
    )
    (run,) = result.runs
    (line,) = [e.line for e in harness.events if isinstance(e, LogLine)]
    assert line == "before \ufffd\ufffd after"
    log = harness.home / "runs" / run.id / "stdout.log"
    assert log.read_bytes() == b"before \xff\xfe after\n"


async def test_log_files_are_complete(harness: Harness) -> None:
    result = await harness.run(
        harness.controller(spec_text([PY, str(COMPONENTS / "output.py"), "lines"]))
    )
    run_dir = harness.home / "runs" / result.runs[0].id
    assert (run_dir / "stdout.log").read_text().splitlines() == [f"out {i}" for i in range(5000)]
    assert (run_dir / "stderr.log").read_text().splitlines() == [f"err {i}" for i in range(5000)]
    streamed = [e.line for e in harness.events if isinstance(e, LogLine) and e.stream == "stdout"]
    assert streamed == [f"out {i}" for i in range(5000)]


@pytest.mark.parametrize(
    ("mode", "state", "reason", "code"),
    [
        (["exit", "3"], RunState.FAILED, "exit code 3", 3),
        (["exit", "0"], RunState.SUCCEEDED, None, 0),
        (["selfkill"], RunState.FAILED, "killed by SIGKILL", -9),
    ],
)
async def test_exit_codes(
    harness: Harness, mode: list[str], state: RunState, reason: str | None, code: int
) -> None:
    result = await harness.run(
        harness.controller(spec_text([PY, str(COMPONENTS / "output.py"), *mode]))
    )
    (run,) = result.runs
    assert (run.state, run.reason, run.exit_code) == (state, reason, code)
    assert harness.rows("SELECT state, exit_code FROM runs WHERE id = ?", run.id) == [
        (state.value, code)
    ]


async def test_metrics_are_parsed_and_outputs_taken_from_them(harness: Harness) -> None:
    text = spec_text(
        [PY, str(COMPONENTS / "output.py"), "metrics"], outputs="[{name: loss, type: float}]"
    )
    result = await harness.run(harness.controller(text))
    (run,) = result.runs
    assert run.metrics == {"loss": 1.0 / 3, "accuracy": 0.3 * 3}
    assert run.outputs == {"loss": 1.0 / 3}
    reported = [e for e in harness.events if isinstance(e, MetricReported)]
    assert [e.step for e in reported] == [1, 2, 3]
    assert harness.rows("SELECT count(*) FROM metrics WHERE run_id = ?", run.id) == [(6,)]
    assert harness.rows("SELECT value FROM outputs WHERE run_id = ? AND name = 'loss'", run.id) == [
        (json.dumps(1.0 / 3),)
    ]


async def test_outputs_lines_set_outputs_of_any_json_type(harness: Harness, tmp_path: Path) -> None:
    """``log_outputs`` (``{"outputs": {...}}`` on stdout) sets outputs, later lines winning key
    by key, and they are journaled with the run: a pipeline passes them downstream."""
    script = tmp_path / "outputs.py"
    script.write_text(
        "from orchestrator.tracking import log_outputs\n"
        "log_outputs(data='/tmp/x.csv', sizes=[1, 2])\n"
        "print('{not json')\n"
        "log_outputs(sizes=[3])\n"
    )
    text = spec_text([PY, str(script)], outputs="[{name: data, type: str}]")
    result = await harness.run(harness.controller(text))
    (run,) = result.runs
    assert run.outputs == {"data": "/tmp/x.csv", "sizes": [3]}
    rows = harness.rows("SELECT name, value FROM outputs WHERE run_id = ? ORDER BY name", run.id)
    assert rows == [("data", json.dumps("/tmp/x.csv")), ("sizes", json.dumps([3]))]


async def test_environment_and_working_dir(harness: Harness, tmp_path: Path) -> None:
    text = spec_text(
        [PY, str(COMPONENTS / "output.py"), "env"],
        env='[{name: MY_VAR, value: "v-{{ globals.iteration }}"}]',
    )
    result = await harness.run(harness.controller(text))
    (run,) = result.runs
    first, cwd = [e.line for e in harness.events if isinstance(e, LogLine)]
    env = json.loads(first)
    run_dir = harness.home / "runs" / run.id
    assert env == {
        "ORCHESTRATOR_RUN_ID": run.id,
        "ORCHESTRATOR_RUN_DIR": str(run_dir),
        "ORCHESTRATOR_OUTPUTS_PATH": str(run_dir / "outputs"),
        "MY_VAR": "v-0",
    }
    assert cwd == str(tmp_path), "without workingDir, runs start beside the spec file"
    assert (run_dir / "outputs").is_dir()


async def test_stop_before_start_runs_nothing(harness: Harness, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.txt"
    controller = harness.controller(
        spec_text([PY, str(COMPONENTS / "stamp.py"), str(stamps), "0"], values=[{"i": 1}, {"i": 2}])
    )
    controller.request_stop("before start")
    result = await harness.run(controller)
    assert result.state is SweepState.STOPPED
    assert not stamps.exists()
