"""Two orchestrator processes on one home share an identical run in flight: the second waits
for the first's outcome instead of running it again. Coordinated with FIFOs, never sleeps:
the first run blocks until the test has seen the second orchestrator start waiting."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
WAITING = "waiting for the identical run"

# The component: count the execution (with its pid, for clean-up);
# then, if the flag file is there (the first run), take it, open the gate FIFO, tell the test
# it started and block until the test writes to the gate; it exits with the flag file's code.
COMPONENT = """
import os, select, sys
here = sys.argv[1]
with open(os.path.join(here, "count"), "a") as f:
    f.write(f"{os.getpid()}\\n")
flag = os.path.join(here, "flag")
if os.path.exists(flag):
    code = int(open(flag).read() or 0)
    os.remove(flag)
    gate = os.open(os.path.join(here, "gate"), os.O_RDONLY | os.O_NONBLOCK)
    fd = os.open(os.path.join(here, "started"), os.O_WRONLY)
    os.write(fd, b"s")
    os.close(fd)
    select.select([gate], [], [], 60)
    sys.exit(code)
"""


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.home = tmp_path / "home"
        (tmp_path / "component.py").write_text(COMPONENT)
        self.spec = tmp_path / "spec.yaml"
        self.spec.write_text(
            "version: 1.1\nkind: operation\nmatrix: {kind: mapping, values: [{a: 1}]}\n"
            "component:\n  inputs: [{name: a, type: int}]\n  run: {kind: job, container: "
            f'{{command: ["{PY}", "{tmp_path / "component.py"}", "{tmp_path}"]}}}}\n'
        )
        os.mkfifo(tmp_path / "started")
        os.mkfifo(tmp_path / "gate")
        self.procs: list[subprocess.Popen[str]] = []

    def orchestrator(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [PY, "-m", "orchestrator", "run", str(self.spec), "--json", "--home", str(self.home)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def wait_started(self, timeout: float) -> None:
        """Block until the first run has started (it writes to the ``started`` FIFO)."""
        fd = os.open(self.dir / "started", os.O_RDONLY | os.O_NONBLOCK)
        try:
            readable, _, _ = select.select([fd], [], [], timeout)
            assert readable, "the first run did not start"
            assert os.read(fd, 1) == b"s"
        finally:
            os.close(fd)

    def open_gate(self) -> None:
        fd = os.open(self.dir / "gate", os.O_WRONLY | os.O_NONBLOCK)  # the run holds it open
        os.write(fd, b"g")
        os.close(fd)

    def executions(self) -> int:
        return len((self.dir / "count").read_text().splitlines())

    def clean_up(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        count = self.dir / "count"
        for pid in count.read_text().split() if count.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)  # a component left blocked on a FIFO


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    try:
        yield made
    finally:
        made.clean_up()


def stderr_until(proc: subprocess.Popen[str], needles: tuple[str, ...], timeout: float) -> str:
    """Read ``proc``'s stderr (raw, as it comes) until a line holds one of ``needles``."""
    assert proc.stderr is not None
    fd, seen, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while True:
        for line in seen.decode(errors="replace").splitlines(keepends=True):
            if line.endswith("\n") and any(n in line for n in needles):
                return line
        left = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(left, 0))
        chunk = os.read(fd, 65536) if readable else b""
        assert chunk, f"no line with {needles} on stderr; got {seen.decode(errors='replace')!r}"
        seen += chunk


def result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=60)
    (run,) = json.loads(out)["runs"]
    assert isinstance(run, dict), err
    return run


def test_a_second_orchestrator_waits_for_the_identical_run_and_reuses_it(setup: Setup) -> None:
    (setup.dir / "flag").write_text("0")
    first = setup.orchestrator()
    setup.wait_started(timeout=30)
    second = setup.orchestrator()
    line = stderr_until(second, (WAITING, "running"), timeout=30)
    assert WAITING in line, f"the second orchestrator ran the configuration itself: {line!r}"
    setup.open_gate()
    assert result(first)["reason"] is None
    reused = result(second)
    assert (reused["state"], reused["reason"]) == ("succeeded", "cache_hit")
    assert first.returncode == second.returncode == 0
    assert setup.executions() == 1, "the configuration executed once"


def test_when_the_first_fails_the_waiting_orchestrator_runs_it(setup: Setup) -> None:
    (setup.dir / "flag").write_text("3")
    first = setup.orchestrator()
    setup.wait_started(timeout=30)
    second = setup.orchestrator()
    assert WAITING in stderr_until(second, (WAITING, "running"), timeout=30)
    setup.open_gate()
    assert result(first)["state"] == "failed"
    ran = result(second)
    assert (ran["state"], ran["reason"]) == ("succeeded", None)
    assert setup.executions() == 2


def test_a_dead_orchestrators_claim_is_taken_over(setup: Setup) -> None:
    (setup.dir / "flag").write_text("0")
    first = setup.orchestrator()
    setup.wait_started(timeout=30)
    first.kill()  # its claim stays in the store; its pid is gone
    first.communicate(timeout=30)
    second = setup.orchestrator()
    ran = result(second)
    assert (ran["state"], ran["reason"]) == ("succeeded", None)
    assert setup.executions() == 2
