"""Fault injection: ``kill -9`` the orchestrator at seeded, randomised points of a sweep, resume,
and count from the runs' own markers that every configuration ran to success exactly once, and
that no run outlived its orchestrator by more than a second.

Each trial runs ``python -m orchestrator run SPEC`` (8 configurations, 4 at a time, each a real
Python process working 5-60 ms, ``tests/components/commit_once.py``; the first one works 30 s
in this invocation, so some run is always alive at the kill), kills it with SIGKILL, waits
(on a pidfd) for its run supervisor to be gone, looks in ``/proc`` for any of the trial's runs
still alive, then runs ``orchestrator resume last`` (in this process) and counts. Kill points,
in turn: the moment a run reports its last action (its ``d`` event, written just before it
exits), 0-12 ms after that, and 0-40 ms after a run started; which run is drawn over the whole
sweep. Trials: 20, or ``ORCHESTRATOR_FAULT_TRIALS``; seed ``ORCHESTRATOR_FAULT_SEED`` (2024).
Each trial prints one line (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.procwait import alive, gone_within

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "tests" / "components" / "commit_once.py"
PY = sys.executable
TRIALS = int(os.environ.get("ORCHESTRATOR_FAULT_TRIALS") or 20)
SEED = int(os.environ.get("ORCHESTRATOR_FAULT_SEED") or 2024)
RUNS = 8
#: How long a run may outlive its orchestrator.
OUTLIVE_S = 1.0


class Events:
    """The runs' ``s INDEX`` / ``d INDEX`` lines, from a fifo. We hold a writer end too, so a
    read waits for the next line instead of reading EOF while no run has the fifo open."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self.buffer = b""

    def next(self, deadline: float) -> tuple[str, int]:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the sweep stopped reporting progress"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    self.buffer += os.read(self.fd, 4096)
        line, _, self.buffer = self.buffer.partition(b"\n")
        kind, index = line.decode().split()
        return kind, int(index)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.writer)


def _processes() -> list[tuple[int, int, list[bytes]]]:
    """Every process: pid, parent pid, argv."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        found.append((int(entry), ppid, argv))
    return found


def _supervisor_of(pid: int) -> int:
    (supervisor,) = [
        p for p, ppid, argv in _processes() if ppid == pid and any(b"supervisor" in a for a in argv)
    ]
    return supervisor


def _alive_with(token: str) -> list[int]:
    return [p for p, _, argv in _processes() if token.encode() in argv and alive(p)]


def _spec(tmp: Path, markers: Path, events: Path, token: str, rng: random.Random) -> Path:
    values = ", ".join(f"{{i: {i}, work: {rng.randint(5, 60)}}}" for i in range(RUNS))
    argv = [PY, "-I", "-S", str(COMPONENT), str(markers), str(events), "{{ i }}", token]
    spec = tmp / "spec.yaml"
    spec.write_text(
        "version: 1.1\n"
        "kind: operation\n"
        f"matrix: {{kind: mapping, concurrency: 4, values: [{values}]}}\n"
        "component:\n"
        "  inputs: [{name: i, type: int}, {name: work, type: int}]\n"
        f"  run: {{kind: job, container: {{command: {json.dumps([*argv, '{{ work }}'])}}}}}\n"
    )
    return spec


def _kill_point(trial: int, rng: random.Random) -> tuple[str, int, float]:
    """Which event to count, how many of them, and how long after the last one to kill."""
    if trial % 3 == 0:
        return "d", rng.randint(1, RUNS - 1), 0.0
    if trial % 3 == 1:
        return "d", rng.randint(1, RUNS - 1), rng.uniform(0, 0.012)
    return "s", rng.randint(1, RUNS), rng.uniform(0, 0.040)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_then_resume_runs_every_configuration_exactly_once(
    trial: int, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    rng = random.Random(SEED * 1000 + trial)
    token = uuid.uuid4().hex
    markers, home = tmp_path / "markers.txt", tmp_path / "home"
    events = Events(tmp_path / "events")
    spec = _spec(tmp_path, markers, tmp_path / "events", token, rng)
    wanted, count, delay = _kill_point(trial, rng)
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [PY, "-m", "orchestrator", "run", str(spec), "--home", str(home), "--json"],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "COMMIT_ONCE_LONG": "0"},
        )
    supervisor = None
    try:
        deadline = time.monotonic() + 30
        seen = 0
        while seen < count:
            kind, _ = events.next(deadline)
            if supervisor is None:  # a run started: the supervisor exists
                supervisor = _supervisor_of(proc.pid)
            seen += kind == wanted
        if delay:
            time.sleep(delay)  # no wait for anything: it places the kill
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(10)

        # Every run is the supervisor's child: once it is gone, so are they.
        assert supervisor is not None
        gone_within(supervisor, max(0.0, killed + OUTLIVE_S - time.monotonic()))
        outlived = time.monotonic() - killed
        orphans = _alive_with(token)

        resumed = cli("resume", "last", "--home", str(home), "--json")
    finally:
        proc.kill()
        proc.wait(10)
        for pid in _alive_with(token):
            os.kill(pid, signal.SIGKILL)
        events.close()
    assert resumed.code == 0, resumed.err + (tmp_path / "run.log").read_text()
    summary = json.loads(resumed.out)

    ran = Counter(int(line.split()[0]) for line in markers.read_text().splitlines())
    duplicates = sum(n - 1 for n in ran.values() if n > 1)
    lost = sum(1 for i in range(RUNS) if ran[i] == 0)
    print(
        f"trial {trial}: kill {delay * 1000:4.1f} ms after {wanted}#{count}; "
        f"duplicates {duplicates}, lost {lost}, orphans {len(orphans)}, "
        f"runs gone {outlived * 1000:.0f} ms after the kill"
    )
    assert not orphans, f"runs outlived their orchestrator by over {OUTLIVE_S}s"
    assert duplicates == 0, f"configurations ran twice: {ran}"
    assert lost == 0, f"configurations never succeeded: {ran}"
    assert {r["state"] for r in summary["runs"]} == {"succeeded"}
    with sqlite3.connect(home / "journal.sqlite") as conn:
        rows = conn.execute("SELECT id FROM runs WHERE state = 'succeeded'").fetchall()
    succeeded = {row[0] for row in rows}
    marked = {line.split()[1] for line in markers.read_text().splitlines()}
    assert marked <= succeeded, "every run that exited 0 is journaled succeeded"
