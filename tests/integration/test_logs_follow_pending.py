"""``logs -f SWEEP:INDEX`` for a run its sweep has not started yet waits for it: it prints the
run's output once it starts, or says in one line that the sweep ended without it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.test_daemon import PY, ROOT, spec


def read_fifo(path: Path, timeout: float) -> str:
    """Everything one writer writes to the FIFO ``path``, once it has closed it (waits on the
    FIFO itself: nothing is polled)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"nothing came through {path} within {timeout}s"
            chunk = os.read(fd, 4096)
            if not chunk:  # the writer closed it
                return data.decode()
            data += chunk
    finally:
        os.close(fd)


def start_two_runs_one_at_a_time(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], int]:
    """A foreground sweep of two runs, one at a time: run 0 tells its pid through a FIFO and
    waits for SIGUSR1 (then succeeds), run 1 prints "second". Returns once run 0 runs."""
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    code = (
        "import os, signal, sys\n"
        "if {{ n }} == 1:\n    print('second'); sys.exit(0)\n"
        "signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))\n"
        f"with open({str(ready)!r}, 'w') as f: f.write(str(os.getpid()))\n"
        "signal.pause()\n"
    )
    path = tmp_path / "spec.yaml"
    path.write_text(
        spec([PY, "-c", code], [{"n": 0}, {"n": 1}]).replace(
            "kind: mapping,", "kind: mapping, concurrency: 1,"
        )
    )
    sweep = subprocess.Popen(
        [PY, "-m", "orchestrator", "run", str(path), "--home", str(tmp_path / "home")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    procs.append(sweep)
    pid = int(read_fifo(ready, timeout=60))
    return sweep, pid


def follow(tmp_path: Path, procs: list[subprocess.Popen[str]], ref: str) -> subprocess.Popen[str]:
    follower = subprocess.Popen(
        [PY, "-m", "orchestrator", "logs", "-f", ref, "--home", str(tmp_path / "home")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    procs.append(follower)
    return follower


def test_logs_f_waits_for_a_run_that_has_not_started(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    sweep, first = start_two_runs_one_at_a_time(tmp_path, procs)
    follower = follow(tmp_path, procs, "last:1")
    assert follower.stderr is not None
    waiting = follower.stderr.readline()
    assert waiting.startswith("waiting for run 1 of sweep "), waiting
    assert waiting.endswith(" to start\n")
    os.kill(first, signal.SIGUSR1)  # run 0 succeeds: run 1 starts
    out, err = follower.communicate(timeout=60)
    assert (follower.returncode, out, err) == (0, "second\n", "")
    assert sweep.wait(60) == 0


def test_logs_f_says_so_when_the_sweep_ends_without_starting_it(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    sweep, _ = start_two_runs_one_at_a_time(tmp_path, procs)
    follower = follow(tmp_path, procs, "last:1")
    assert follower.stderr is not None
    waiting = follower.stderr.readline()
    assert waiting.startswith("waiting for run 1 of sweep "), waiting
    sweep_id = waiting.split()[-3]
    sweep.send_signal(signal.SIGTERM)  # stops run 0: run 1 never starts
    out, err = follower.communicate(timeout=60)
    assert (follower.returncode, out) == (2, "")
    assert err == f"orchestrator: sweep {sweep_id} has no run 1 (it ended stopped without it)\n"
    assert sweep.wait(60) == 1
