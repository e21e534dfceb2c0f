"""Diagnostics through structlog (JSON lines off a terminal, console lines on one), the
event log for CI systems, and a real daemon's stderr."""

from __future__ import annotations

import io
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
import structlog

from orchestrator.diagnostics import (
    ENV_VAR,
    LineLogger,
    configure,
    is_ready_record,
    iso_timestamp,
)
from orchestrator.engine.events import (
    Event,
    LogLine,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.states import RunState, SweepState
from orchestrator.eventlog import BATCH, open_event_log, write_event_log

ROOT = Path(__file__).resolve().parents[2]
TS = 1_700_000_000.25


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_format_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def records(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def parse_time(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp)


# --------------------------------------------------------------------------- diagnostics


def test_json_lines_carry_timestamp_level_and_event_first() -> None:
    out = io.StringIO()
    log = configure(out, json_lines=True)
    before = datetime.now(UTC)
    log.info("ready", pid=42)
    log.warning("plugin x cannot be imported")
    log.error("sweep abc crashed: RuntimeError: boom")
    log.debug("not shown: the threshold is info")
    first, second, third = records(out.getvalue())
    assert list(first) == ["timestamp", "level", "event", "pid"]
    assert first["level"] == "info" and first["event"] == "ready" and first["pid"] == 42
    assert before <= parse_time(first["timestamp"]) <= datetime.now(UTC)
    assert (second["level"], second["event"]) == ("warning", "plugin x cannot be imported")
    assert third["level"] == "error"
    assert not structlog.is_configured(), "structlog's global configuration is left alone"


def test_auto_is_json_off_a_terminal_and_console_on_one() -> None:
    out = io.StringIO()
    configure(out).info("ready")
    assert records(out.getvalue())[0]["event"] == "ready"

    text = _through_a_pty(lambda stream: configure(stream).info("ready", pid=7))
    assert "\x1b[" in text, "colours on a terminal"
    plain = _strip_ansi(text)
    assert "[info" in plain and "ready" in plain and "pid=7" in plain
    assert not plain.lstrip().startswith("{")
    parse_time(plain.split()[0])


def test_no_color_turns_colours_off_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = _through_a_pty(lambda stream: configure(stream).info("ready"))
    assert "\x1b[" not in text and "[info" in text


def test_the_environment_variable_picks_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "console")
    out = io.StringIO()
    configure(out).warning("recovered: 1 unfinished run(s) marked failed")
    line = out.getvalue()
    assert line.count("\n") == 1 and "\x1b[" not in line, "no colours off a terminal"
    assert "[warning" in line and "recovered: 1 unfinished run(s) marked failed" in line

    monkeypatch.setenv(ENV_VAR, "JSON")
    text = _through_a_pty(lambda stream: configure(stream).info("ready"))
    assert json.loads(text.strip())["event"] == "ready"

    monkeypatch.setenv(ENV_VAR, "console")
    out = io.StringIO()
    configure(out, json_lines=True).info("ready")  # an explicit choice wins
    assert records(out.getvalue())[0]["event"] == "ready"


def test_an_unknown_format_counts_as_auto_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "yaml")
    out = io.StringIO()
    configure(out).info("ready")
    warning, ready = records(out.getvalue())
    assert warning["level"] == "warning" and warning["value"] == "yaml"
    assert ENV_VAR in warning["event"]
    assert ready["event"] == "ready"


def test_each_line_is_flushed_as_it_is_written() -> None:
    flushed: list[str] = []

    class Sink(io.StringIO):
        def flush(self) -> None:
            flushed.append(self.getvalue())

    sink = Sink()
    log = configure(sink, json_lines=True)
    log.info("one")
    log.info("two")
    assert [len(text.splitlines()) for text in flushed] == [1, 2]


def test_line_logger_logs_each_non_empty_line_for_err_taking_functions() -> None:
    out = io.StringIO()
    lines = LineLogger(configure(out, json_lines=True), "warning")
    err = lines.as_stream()
    err.write("recovered: 2 unfinished run(s) marked failed (orchestrator_lost)\n")
    err.write("plugin cache: cannot ")
    err.write("be imported\n\n   \nsecond\nhalf a ")
    assert len(records(out.getvalue())) == 3
    err.flush()
    assert [(r["level"], r["event"]) for r in records(out.getvalue())] == [
        ("warning", "recovered: 2 unfinished run(s) marked failed (orchestrator_lost)"),
        ("warning", "plugin cache: cannot be imported"),
        ("warning", "second"),
        ("warning", "half a "),
    ]
    err.flush()  # nothing pending: nothing written
    assert len(records(out.getvalue())) == 4
    assert not err.isatty()


def test_iso_timestamp_is_utc_to_the_microsecond() -> None:
    assert iso_timestamp(TS) == "2023-11-14T22:13:20.250000Z"
    assert parse_time(iso_timestamp()).tzinfo is not None


# --------------------------------------------------------------------------- event log


def sweep_events() -> list[Event]:
    common: dict[str, Any] = {"sweep_id": "s1"}
    run: dict[str, Any] = {"run_id": "r1", "index": 0}
    return [
        SweepStarted(**common, seq=1, ts=TS, name="demo", total=2, concurrency=1),
        RunCreated(**common, **run, seq=2, ts=TS + 1, params={"lr": 0.1}, argv=["train"]),
        RunStateChanged(
            **common, **run, seq=3, ts=TS + 2, previous=RunState.CREATED, state=RunState.RUNNING
        ),
        LogLine(**common, **run, seq=4, ts=TS + 3, stream="stdout", line="epoch 1 ✓"),
        MetricReported(**common, **run, seq=5, ts=TS + 4, step=1, values={"loss": 0.5}),
        RunStateChanged(
            **common,
            **run,
            seq=6,
            ts=TS + 5,
            previous=RunState.RUNNING,
            state=RunState.FAILED,
            exit_code=3,
            stderr_tail=["Traceback", "boom"],
        ),
        SweepStopping(
            **common, seq=7, ts=TS + 6, reason="early stopping", final_state=SweepState.FAILED
        ),
        SweepFinished(
            **common, seq=8, ts=TS + 7, state=SweepState.FAILED, reason="1 failed", counts={}
        ),
    ]


async def feed(events: list[Event], sink: IO[str], buffer: int = 100) -> None:
    send, receive = anyio.create_memory_object_stream[Event](buffer)
    async with anyio.create_task_group() as tg:
        tg.start_soon(write_event_log, receive, sink)
        async with send:
            for event in events:
                await send.send(event)


@pytest.mark.anyio
async def test_event_log_writes_one_json_record_per_event() -> None:
    sink = io.StringIO()
    events = sweep_events()
    await feed(events, sink)
    logged = records(sink.getvalue())
    assert [r["event"] for r in logged] == [
        "sweep_started",
        "run_created",
        "run_state_changed",
        "log_line",
        "metric_reported",
        "run_state_changed",
        "sweep_stopping",
        "sweep_finished",
    ]
    assert [r["level"] for r in logged] == [
        "info",
        "info",
        "info",
        "info",
        "info",
        "warning",
        "warning",
        "error",
    ]
    for record, event in zip(logged, events, strict=True):
        assert list(record)[:3] == ["timestamp", "level", "event"]
        assert record["timestamp"] == iso_timestamp(event.ts)
        assert "type" not in record, "the type tag is the event key"
        assert record["seq"] == event.seq and record["ts"] == event.ts
    assert logged[1]["params"] == {"lr": 0.1} and logged[1]["argv"] == ["train"]
    assert logged[3]["line"] == "epoch 1 ✓"
    assert logged[4]["values"] == {"loss": 0.5}
    failed = logged[5]
    assert (failed["previous"], failed["state"], failed["exit_code"]) == ("running", "failed", 3)
    assert failed["stderr_tail"] == ["Traceback", "boom"]
    assert logged[6]["final_state"] == "failed" and logged[6]["reason"] == "early stopping"
    assert logged[7]["state"] == "failed" and logged[7]["counts"] == {}


@pytest.mark.anyio
async def test_a_sweep_that_does_not_fail_logs_info() -> None:
    sink = io.StringIO()
    common: dict[str, Any] = {"sweep_id": "s2", "ts": TS}
    await feed(
        [
            RunStateChanged(
                **common,
                seq=1,
                run_id="r",
                index=0,
                previous=RunState.RUNNING,
                state=RunState.SUCCEEDED,
            ),
            SweepFinished(**common, seq=2, state=SweepState.STOPPED, reason=None, counts={}),
        ],
        sink,
    )
    assert [r["level"] for r in records(sink.getvalue())] == ["info", "info"]


@pytest.mark.anyio
async def test_event_log_appends_to_a_file_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier": true}\n')
    lines = [
        LogLine(sweep_id="s", seq=i, ts=TS + i, run_id="r", index=0, stream="stdout", line=str(i))
        for i in range(BATCH * 2 + 3)
    ]
    with open_event_log(str(path)) as sink:
        await feed(list(lines), sink, buffer=len(lines))  # all waiting: whole batches
    assert sink.closed
    logged = records(path.read_text())
    assert logged[0] == {"earlier": True}
    assert [r["line"] for r in logged[1:]] == [str(i) for i in range(len(lines))]


def test_dash_is_stderr_and_stays_open(capsys: pytest.CaptureFixture[str]) -> None:
    with open_event_log("-") as sink:
        assert sink is sys.stderr
        anyio.run(feed, sweep_events()[:1], sink)
    assert not sys.stderr.closed
    assert records(capsys.readouterr().err)[0]["event"] == "sweep_started"


@pytest.mark.anyio
async def test_a_slow_file_does_not_block_the_event_loop() -> None:
    class Stuck(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()
            self.timed_out = False

        def write(self, text: str) -> int:
            self.entered.set()
            self.timed_out = not self.release.wait(10)
            return super().write(text)

    sink = Stuck()
    send, receive = anyio.create_memory_object_stream[Event](10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(write_event_log, receive, sink)
        async with send:
            await send.send(sweep_events()[0])
            assert await anyio.to_thread.run_sync(sink.entered.wait, 10)
            await send.send(sweep_events()[1])  # the loop runs while the write waits
            sink.release.set()
    assert not sink.timed_out
    assert [r["seq"] for r in records(sink.getvalue())] == [1, 2]


# --------------------------------------------------------------------------- pty helpers


def _through_a_pty(write: Any) -> str:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as stream:
            assert stream.isatty()
            write(stream)
        chunks = []
        while select.select([master], [], [], 5)[0]:
            chunk = os.read(master, 65536)
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
        return b"".join(chunks).decode().replace("\r\n", "\n")
    finally:
        os.close(slave)
        os.close(master)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --------------------------------------------------------------------------- the daemon


@pytest.fixture
def daemon_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _lines(stream: Any) -> queue.Queue[str | None]:
    """stderr's lines, read by a thread; None at the end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_a_daemon_logs_json_lines_on_a_pipe(daemon_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon", "--home", str(daemon_home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stderr is not None
        lines = _lines(proc.stderr)
        seen: list[str] = []
        while (line := lines.get(timeout=30)) is not None:
            seen.append(line)
            if is_ready_record(line):
                break
        else:
            raise AssertionError(f"the daemon did not start: {seen}")
        proc.send_signal(signal.SIGTERM)
        while (line := lines.get(timeout=30)) is not None:
            seen.append(line)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    logged = [json.loads(line) for line in seen]
    assert [is_ready_record(line) for line in seen].count(True) == 1
    for record in logged:
        assert list(record)[:3] == ["timestamp", "level", "event"], record
        parse_time(record["timestamp"])
    events = [(r["level"], r["event"]) for r in logged]
    assert ("info", "ready") in events
    assert ("info", "SIGTERM: stopping; runs get 10s to finish") in events
    ready = next(r for r in logged if r["event"] == "ready")
    assert ready["pid"] == proc.pid


def test_is_ready_record_knows_both_renderings() -> None:
    out = io.StringIO()
    configure(out, json_lines=True).info("ready", pid=1)
    configure(out, json_lines=True).info("not ready yet")
    json_ready, json_other = out.getvalue().splitlines()
    assert is_ready_record(json_ready) and not is_ready_record(json_other)
    console = _through_a_pty(lambda stream: configure(stream).info("ready", pid=7))
    assert is_ready_record(console)
    assert not is_ready_record("ready")
    assert not is_ready_record("{not json")
