"""A closed pipe or a closed terminal stops a sweep as SIGTERM does: runs stopped (their process
groups gone), the sweep ``stopped``, the journal consistent, the process exits 1; output that
can no longer be written is dropped, not fatal."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from orchestrator.output_guard import GuardedOutput
from tests.procwait import gone_within

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TIMEOUT_S = 30.0


class Started:
    """The run's pid, as it writes it to a fifo (we hold a writer end too, so reading waits
    for the line instead of seeing EOF before the run opens the fifo)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def pid(self) -> int:
        deadline = time.monotonic() + TIMEOUT_S
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the run never started"
            if select.select([self.fd], [], [], remaining)[0]:
                with contextlib.suppress(BlockingIOError):
                    data += os.read(self.fd, 64)
        return int(data)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.writer)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    fifo = Started(tmp_path / "started.fifo")
    yield fifo
    fifo.close()


@pytest.fixture
def spec(write: Callable[..., Path], started: Started) -> Path:
    """Two configurations, one at a time; the first says its pid, then sleeps."""
    say = f"open({str(started.path)!r}, 'w').write(f'{{os.getpid()}}\\\\n')"
    child = f"import os, time; {say}; time.sleep(600)"
    return write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, concurrency: 1, values: [{{i: 1}}, {{i: 2}}]}}
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "{child}"]}}}}
    """)


def _start(
    spec: Path,
    home: Path,
    procs: list[subprocess.Popen[str]],
    stdout: int | IO[str],
    stderr: int | IO[str],
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", "run", str(spec), "--grace", "5", "--home", str(home)],
        stdout=stdout,
        stderr=stderr,
        text=True,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc


def _assert_stopped_cleanly(
    proc: subprocess.Popen[str], home: Path, run_pid: int, reason: str
) -> None:
    assert proc.wait(TIMEOUT_S) == 1
    assert gone_within(run_pid, TIMEOUT_S)
    with pytest.raises(ProcessLookupError):  # the run's whole process group is gone
        os.killpg(run_pid, 0)
    with sqlite3.connect(home / "journal.sqlite") as db:
        sweeps = db.execute("SELECT state, reason FROM sweeps").fetchall()
        runs = db.execute("SELECT idx, state, reason FROM runs ORDER BY idx").fetchall()
    assert sweeps == [("stopped", reason)]
    assert runs == [(0, "stopped", reason)]


def test_closed_pipe_after_the_first_line_stops_the_sweep(
    spec: Path, started: Started, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "h"
    # ``run SPEC 2>&1 | head -1``: the header line, then the reader goes.
    proc = _start(spec, home, procs, subprocess.PIPE, subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("sweep ")
    pid = started.pid()
    proc.stdout.close()
    _assert_stopped_cleanly(proc, home, pid, "interrupted (output closed)")


def test_closed_stdout_stops_the_sweep_even_while_nothing_is_written(
    spec: Path, started: Started, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "h"
    # ``run SPEC | less``, then quit less: the progress goes to stderr, nothing to stdout yet.
    with open(tmp_path / "stderr.log", "w") as err:
        proc = _start(spec, home, procs, subprocess.PIPE, err)
    pid = started.pid()
    assert proc.stdout is not None
    proc.stdout.close()
    _assert_stopped_cleanly(proc, home, pid, "interrupted (output closed)")


def test_sighup_stops_the_sweep(
    spec: Path, started: Started, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "h"
    with open(tmp_path / "out.log", "w") as out:
        proc = _start(spec, home, procs, out, subprocess.STDOUT)
    pid = started.pid()
    proc.send_signal(signal.SIGHUP)
    _assert_stopped_cleanly(proc, home, pid, "interrupted (SIGHUP)")
    assert "stopped (interrupted (SIGHUP))\n" in (tmp_path / "out.log").read_text()


def test_a_closed_pipe_drops_output_and_is_heard_once() -> None:
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as stream:
        guard = GuardedOutput(stream)
        heard: list[str] = []
        guard.on_gone(lambda: heard.append("gone"))
        assert guard.write("x" * 100_000) == 100_000  # more than a pipe holds: a real write
        guard.flush()
        guard.write("more\n")
        guard.flush()
        assert guard.gone and heard == ["gone"]
        guard.on_gone(lambda: heard.append("late"))
        assert heard == ["gone", "late"]


def test_sighup_is_left_alone_under_nohup(
    spec: Path, started: Started, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "h"
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does; children inherit it
    try:
        with open(tmp_path / "out.log", "w") as out:
            proc = _start(spec, home, procs, out, subprocess.STDOUT)
    finally:
        signal.signal(signal.SIGHUP, ignored)
    pid = started.pid()
    proc.send_signal(signal.SIGHUP)  # discarded at once: an ignored signal is never pending
    proc.send_signal(signal.SIGINT)
    _assert_stopped_cleanly(proc, home, pid, "interrupted (SIGINT)")
    assert "SIGHUP" not in (tmp_path / "out.log").read_text()
