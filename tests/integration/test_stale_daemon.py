"""A daemon killed with kill -9 leaves its socket and ``daemon.json`` behind: read commands
read the journal instead, the commands that need the daemon say in one line that it is gone
and how to start it, and a daemon dying mid-request is one line too. Never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store.layout import daemon_info_path
from tests.integration.test_daemon import PY, ROOT, Daemon, spec, sse, start_daemon
from tests.procwait import gone_within

#: A run that says it is up, then waits until it is stopped (its supervisor stops it when
#: the daemon dies).
BLOCKS = [PY, "-c", "import signal; print('up', flush=True); signal.pause()"]


@pytest.fixture
def home() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "orchestrator", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def kill_9(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    assert gone_within(proc.pid, 10)
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


def run_a_sweep_then_kill_the_daemon(home: Path) -> tuple[str, str, int]:
    """A finished sweep and a running one, then kill -9: their ids and the daemon's pid."""
    proc = start_daemon(home)
    try:
        with Daemon(home, proc).unix() as client, client.stream("GET", "/api/v1/events") as r:
            events = sse(r)
            done = client.post("/api/v1/sweeps", json={"spec": spec([PY, "-c", "print(7)"])})
            finished = done.json()["sweep"]
            for kind, data in events:
                if kind == "SweepFinished" and json.loads(data)["sweep_id"] == finished:
                    break
            running = client.post("/api/v1/sweeps", json={"spec": spec(BLOCKS)}).json()["sweep"]
            for kind, data in events:
                if kind == "LogLine" and json.loads(data)["line"] == "up":
                    break
    finally:
        kill_9(proc)
    assert daemon_info_path(home).exists(), "a killed daemon leaves its files behind"
    return finished, running, proc.pid


def test_read_commands_fall_back_to_the_journal_after_a_kill_9(home: Path) -> None:
    finished, running, _ = run_a_sweep_then_kill_the_daemon(home)
    listed = cli(home, "ls", "--json")
    assert (listed.returncode, listed.stderr) == (0, "")
    states = {item["id"]: (item["state"], item["reason"]) for item in json.loads(listed.stdout)}
    assert states == {finished: ("succeeded", None), running: ("failed", "orchestrator_lost")}
    shown = cli(home, "show", finished[:8], "--json")
    assert (shown.returncode, shown.stderr) == (0, "")
    body = json.loads(shown.stdout)
    assert (body["sweep"], [r["state"] for r in body["runs"]]) == (finished, ["succeeded"])
    log = cli(home, "logs", "-f", f"{finished[:8]}:0")
    assert (log.returncode, log.stdout, log.stderr) == (0, "7\n", "")


def test_submit_and_stop_say_in_one_line_that_the_daemon_is_gone(
    home: Path, tmp_path: Path
) -> None:
    _, running, pid = run_a_sweep_then_kill_the_daemon(home)
    path = tmp_path / "s.yaml"
    path.write_text(spec([PY, "-c", "print(1)"]))
    socket = json.loads(daemon_info_path(home).read_text())["socket"]
    gone = f"the daemon of {home} is gone (pid {pid} no longer answers on {socket})"
    start = f"start it again with `orchestrator daemon --home {home}`"
    submitted = cli(home, "submit", str(path))
    assert submitted.returncode == 1
    assert submitted.stderr == f"orchestrator: {gone}; {start}\n"
    stopped = cli(home, "stop", running[:8])
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(
        f"orchestrator: {gone} and its runs with it: nothing is left to stop"
    )
    assert stopped.stderr.endswith(f"; {start}\n") and stopped.stderr.count("\n") == 1


def test_a_daemon_killed_while_a_log_is_followed_is_one_line(
    home: Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc = start_daemon(home)
    try:
        with Daemon(home, proc).unix() as client, client.stream("GET", "/api/v1/events") as r:
            client.post("/api/v1/sweeps", json={"spec": spec(BLOCKS)})
            for kind, data in sse(r):
                if kind == "LogLine" and json.loads(data)["line"] == "up":
                    break
        follower = subprocess.Popen(
            [PY, "-m", "orchestrator", "logs", "-f", "last:0", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        procs.append(follower)
        assert follower.stdout is not None
        assert follower.stdout.readline() == "up\n"  # followed through the daemon now
    finally:
        kill_9(proc)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 1 and out == ""
    assert err.startswith("orchestrator: lost the connection to the daemon on ")
    assert err.count("\n") == 1, err
