"""References through the daemon: every command and endpoint that takes a sweep or a run
takes what the README promises (an id, a unique prefix, ``last``, ``SWEEP:INDEX``), resolved
in one place; and a starting daemon says where it listens."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from orchestrator.diagnostics import is_ready_record
from tests.integration.test_daemon import PY, ROOT, Daemon, daemon, spec, sse

__all__ = ["daemon"]  # the fixture, used by name

#: A run that says it is up, then waits until it is stopped (SIGTERM ends it).
BLOCKS = [PY, "-c", "import signal; print('up', flush=True); signal.pause()"]


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "orchestrator", *args, "--home", str(daemon.home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def submit(client: httpx.Client, text: str) -> str:
    answer = client.post("/api/v1/sweeps", json={"spec": text})
    assert answer.status_code == 201, answer.text
    sweep_id: str = answer.json()["sweep"]
    return sweep_id


def states(events: Iterator[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Each RunStateChanged, LogLine and SweepFinished event's data, as it comes."""
    for kind, data in events:
        if kind in ("RunStateChanged", "LogLine", "SweepFinished"):
            yield json.loads(data) | {"kind": kind}


def wait_for(events: Iterator[dict[str, Any]], **wanted: str) -> dict[str, Any]:
    for event in events:
        if all(event.get(k) == v for k, v in wanted.items()):
            return event
    raise AssertionError(f"the event stream ended before {wanted}")


def test_stop_takes_a_prefix_last_and_sweep_index(daemon: Daemon) -> None:
    two = spec(BLOCKS, [{"n": 0}, {"n": 1}])
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as response:
        events = states(sse(response))
        first = submit(client, two)
        running: dict[int, str] = {}
        while len(running) < 2:
            event = wait_for(events, kind="RunStateChanged", state="running", sweep_id=first)
            running[int(event["index"])] = event["run_id"]

        by_index = cli(daemon, "stop", "--run", f"{first[:8]}:0")
        assert (by_index.returncode, by_index.stderr) == (0, "")
        assert by_index.stdout == f"stopping run {running[0]}\n"
        wait_for(events, run_id=running[0], state="stopped")

        by_prefix = cli(daemon, "stop", "--run", running[1][:8])
        assert (by_prefix.returncode, by_prefix.stderr) == (0, "")
        assert by_prefix.stdout == f"stopping run {running[1]}\n"
        wait_for(events, run_id=running[1], state="stopped")
        wait_for(events, kind="SweepFinished", sweep_id=first)

        second = submit(client, spec(BLOCKS))
        wait_for(events, kind="RunStateChanged", state="running", sweep_id=second)
        newest = cli(daemon, "stop", "last")
        assert (newest.returncode, newest.stdout) == (0, f"stopping sweep {second}\n")
        finished = wait_for(events, kind="SweepFinished", sweep_id=second)
        assert finished["state"] == "stopped"

        third = submit(client, spec(BLOCKS))
        wait_for(events, kind="RunStateChanged", state="running", sweep_id=third)
        prefixed = cli(daemon, "stop", third[:6])
        assert (prefixed.returncode, prefixed.stdout) == (0, f"stopping sweep {third}\n")
        assert wait_for(events, kind="SweepFinished", sweep_id=third)["state"] == "stopped"

        again = cli(daemon, "stop", third[:6])
        assert again.returncode == 2
        assert (
            again.stderr
            == f"orchestrator: sweep {third[:12]} is stopped, not running in this daemon\n"
        )


def test_the_api_resolves_prefixes_and_sweep_index(daemon: Daemon) -> None:
    text = spec(BLOCKS, [{"n": 0}])
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as response:
        events = states(sse(response))
        sweep = submit(client, text)
        run_id = wait_for(events, kind="LogLine", line="up")["run_id"]  # in its log file
        log = client.get(f"/api/v1/runs/{sweep[:7]}:0/logs")
        assert (log.status_code, log.text) == (200, "up\n")
        assert client.get(f"/api/v1/runs/{run_id[:7]}/logs").text == "up\n"
        assert client.get("/api/v1/runs/last:0/logs").text == "up\n"
        missing = client.get("/api/v1/runs/last:7/logs")
        assert missing.status_code == 404
        assert missing.json() == {
            "error": f"sweep {sweep[:12]} has no run 7 (its run indexes: 0 to 0)"
        }
        stopped = client.post(f"/api/v1/sweeps/{sweep[:7]}/stop")
        assert (stopped.status_code, stopped.json()) == (202, {"stopping": True, "sweep": sweep})
        assert wait_for(events, kind="SweepFinished")["state"] == "stopped"


def test_an_ambiguous_prefix_is_a_400_naming_how_many(daemon: Daemon) -> None:
    # 17 runs: two of them share the first hex digit of their ids, whatever the ids are.
    text = spec([PY, "-c", "pass"], [{"n": i} for i in range(17)])
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as response:
        sweep = submit(client, text)
        wait_for(states(sse(response)), kind="SweepFinished", sweep_id=sweep)
        runs = client.get(f"/api/v1/sweeps/{sweep}").json()["runs"]
    digit, count = Counter(r["id"][0] for r in runs).most_common(1)[0]
    assert count >= 2
    with daemon.unix() as client:
        answer = client.get(f"/api/v1/runs/{digit}/logs")
        stop = client.post(f"/api/v1/runs/{digit}/stop")
    message = f"{digit!r} matches {count} runs; give more characters"
    assert (answer.status_code, answer.json()) == (400, {"error": message})
    assert (stop.status_code, stop.json()) == (400, {"error": message})
    logs = cli(daemon, "logs", digit)
    assert (logs.returncode, logs.stderr) == (2, f"orchestrator: {message}\n")


def test_a_starting_daemon_says_where_it_listens_and_how_to_reach_it() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", "daemon", "--home", str(home), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "ORCHESTRATOR_LOG_FORMAT": "json"},
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(json.loads(line))
            if is_ready_record(line):
                break
        info = Daemon(home, proc).info
        said = " ".join(record["event"] for record in lines)
        assert f"listening on {info['socket']} and http://127.0.0.1:{info['port']}" in said
        assert f"orchestrator submit SPEC --home {home}" in said
        assert f"curl --unix-socket {info['socket']} http://daemon/api/v1/sweeps" in said
        ready = lines[-1]
        assert ready["event"] == "ready" and ready["socket"] == info["socket"]
        assert ready["url"] == f"http://127.0.0.1:{info['port']}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def test_submit_and_stop_help_explain_every_argument() -> None:
    def helped(command: str) -> str:
        done = subprocess.run(
            [PY, "-m", "orchestrator", command, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())  # however argparse wraps it

    submit = helped("submit")
    assert "--param NAME=VALUE override an input (repeatable)" in submit
    assert "--name NAME name of the sweep (default: the operation's name)" in submit
    stop = helped("stop")
    assert stop.startswith("usage: orchestrator stop [-h] [--run] [--home HOME] SWEEP|RUN ")
    assert "TARGET" not in stop and "SWEEP_OR_RUN" not in stop
    assert "Stop SWEEP (an id, a unique prefix, or last), or with --run the run RUN" in stop
    assert "SWEEP|RUN what to stop: SWEEP, or RUN with --run" in stop


def test_submit_warns_when_the_matrix_overrides_a_param(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec([PY, "-c", "pass"], [{"n": 1}, {"n": 2}]))
    result = cli(daemon, "submit", str(path), "-P", "n=9")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "orchestrator: warning: -P n=9 is ignored: the matrix sets 'n' for every run\n"
    )
    assert "(2 runs)" in result.stdout
