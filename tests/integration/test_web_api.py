"""The API the web page reads, for real: a daemon process, sweeps of tiny scripts printing
metrics, one submitted to the daemon and one run by the CLI in the same home (whose events
the daemon reads back from the journal)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import daemon_process
from tests.integration.test_daemon import ROOT, Daemon, sse, start_daemon

PY = sys.executable

#: Prints, for run ``n``: 30 reports of ``loss`` (n + 1/(s+1): run n=1 is best) and ``acc`` at
#: steps 0, 2, 4..., and 30 reports of ``tick`` without a step.
REPORTS = (
    "import json, sys\n"
    "n = int(sys.argv[1])\n"
    "for s in range(30):\n"
    "    print(json.dumps({'metrics': {'loss': n + 1 / (s + 1), 'acc': s / 30}, 'step': 2 * s}))\n"
    "    print(json.dumps({'metrics': {'tick': s}}))\n"
)

#: Prints a line, waits for the gate file, prints another, then reports ``loss``.
GATED = (
    "import json, os, sys, time\n"
    "print('before gate', flush=True)\n"
    "while not os.path.exists(sys.argv[2]):\n"
    "    time.sleep(0.02)\n"
    "print('after gate', flush=True)\n"
    "print(json.dumps({'metrics': {'loss': float(sys.argv[1])}, 'step': 7}), flush=True)\n"
)


def sweep_spec(script: str, values: list[dict[str, Any]], *args: str) -> str:
    """A mapping sweep of ``script`` (args: ``n``, then ``args``), minimising ``loss``."""
    command = json.dumps([PY, "-c", script])
    argv = json.dumps(["{{ n }}", *args])
    return (
        "version: 1.1\nkind: operation\n"
        f"matrix:\n  kind: mapping\n  values: {json.dumps(values)}\n"
        "  earlyStopping: [{kind: metric_early_stopping, metric: loss, value: -1, "
        "optimization: minimize}]\n"
        "component:\n  inputs: [{name: n, type: int}]\n"
        f"  run: {{kind: job, container: {{command: {command}, args: {argv}}}}}\n"
    )


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with daemon_process(start_daemon, stop_timeout=20) as (home, proc):
        yield Daemon(home, proc)


#: Seconds a test waits for what it expects on a stream (the stream pings every 15 s, so a
#: silent daemon still wakes the reader; a read timeout catches one that stopped).
WAIT_S = 40.0


def within(stream: Iterator[tuple[str, str]], seconds: float = WAIT_S) -> Iterator[tuple[str, str]]:
    """``stream``'s events until ``seconds`` have passed (then the test fails)."""
    deadline = time.monotonic() + seconds
    for item in stream:
        yield item
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"the stream ended, or what was expected did not come in {seconds:g}s")


def open_events(client: httpx.Client) -> Any:
    """``GET /api/v1/events`` with a read timeout past the stream's 15 s pings."""
    return client.stream("GET", "/api/v1/events", timeout=httpx.Timeout(10, read=30))


def events_until(
    stream: Iterator[tuple[str, str]], sweep: str | None, kind: str
) -> list[tuple[str, dict[str, Any]]]:
    """The stream's events (of ``sweep``, once known) up to the first ``kind`` of it."""
    seen = []
    for name, data in within(stream):
        event = json.loads(data) if data.startswith("{") else {}
        if sweep is not None and event.get("sweep_id") != sweep:
            continue
        seen.append((name, event))
        if name == kind:
            return seen
    raise AssertionError(f"the event stream ended before {kind}: {seen[-5:]}")


def cli_run(home: Path, spec: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "orchestrator", "run", str(spec), "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def listed(client: httpx.Client, sweep: str) -> dict[str, Any]:
    (item,) = [s for s in client.get("/api/v1/sweeps").json() if s["id"] == sweep]
    return dict(item)


def test_sweep_list_fields_and_metric_series(daemon: Daemon) -> None:
    text = sweep_spec(REPORTS, [{"n": 3}, {"n": 1}, {"n": 2}])
    with daemon.unix() as client, open_events(client) as events:
        sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
        finished = events_until(sse(events), sweep, "SweepFinished")[-1][1]
        assert finished["counts"] == {"succeeded": 3}
        runs = {r["index"]: r["id"] for r in client.get(f"/api/v1/sweeps/{sweep}").json()["runs"]}

        item = listed(client, sweep)
        assert item["counts"] == {"succeeded": 3} and item["done"] == 3
        assert item["objective"] == {"metric": "loss", "goal": "minimize"}
        assert item["best"] == {"index": 1, "run": runs[1], "value": 1 + 1 / 30}
        assert (item["live"], item["via_daemon"]) == (False, True)

        names = client.get(f"/api/v1/sweeps/{sweep}/metrics/names").json()
        assert names == {"names": ["acc", "loss", "tick"]}

        every = client.get(f"/api/v1/sweeps/{sweep}/metrics").json()
        assert every["sweep"] == sweep and sorted(every["metrics"]) == ["acc", "loss", "tick"]
        assert sorted(every["metrics"]["loss"]) == ["0", "1", "2"]
        assert every["metrics"]["tick"]["0"] == [[s, s] for s in range(30)], "ordinal steps"
        assert every["metrics"]["loss"]["0"][:2] == [[0, 4.0], [2, 3.5]]

        thin = client.get(f"/api/v1/sweeps/{sweep}/metrics?names=loss&max_points=7").json()
        assert list(thin["metrics"]) == ["loss"]
        for index, n in ((0, 3), (1, 1), (2, 2)):
            points = thin["metrics"]["loss"][str(index)]
            assert len(points) == 7
            assert points[0] == [0, n + 1.0] and points[-1] == [58, n + 1 / 30]
            steps = [step for step, _ in points]
            assert steps == sorted(steps) and len(set(steps)) == 7

        run = client.get(f"/api/v1/runs/{runs[2]}/metrics?max_points=2").json()
        assert run["run"] == runs[2] and sorted(run["metrics"]) == ["acc", "loss", "tick"]
        assert run["metrics"]["loss"] == [[0, 3.0], [58, 2 + 1 / 30]]
        by_index = client.get(f"/api/v1/runs/{sweep}:2/metrics?names=tick").json()
        assert by_index["metrics"] == {"tick": [[s, s] for s in range(30)]}

        for bad in ("x", "1", "10001", "-3", "2.5", "\u00b2", "9" * 5000):
            answer = client.get(f"/api/v1/sweeps/{sweep}/metrics?max_points={bad}")
            assert answer.status_code == 400 and "max_points" in answer.json()["error"]
            assert client.get(f"/api/v1/runs/{runs[0]}/metrics?max_points={bad}").status_code == 400
        assert client.get("/api/v1/sweeps/nosuch/metrics").status_code == 404
        assert client.get("/api/v1/sweeps/nosuch/metrics/names").status_code == 404
        assert client.get("/api/v1/runs/nosuch/metrics").status_code == 404

        # The page asks for a log's size with HEAD: the size, no body, no file left open.
        log = client.get(f"/api/v1/runs/{runs[0]}/logs").content
        head = client.head(f"/api/v1/runs/{runs[0]}/logs")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(log) > 0
        rest = client.head(f"/api/v1/runs/{runs[0]}/logs?offset=10")
        assert int(rest.headers["content-length"]) == len(log) - 10


def test_a_cli_sweep_in_the_same_home_is_live_on_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    spec = tmp_path / "spec.yaml"
    spec.write_text(sweep_spec(GATED, [{"n": 5}, {"n": 4}], str(gate)))
    with daemon.unix() as client, open_events(client) as events:
        stream = sse(events)
        proc = cli_run(daemon.home, spec)
        try:
            started = events_until(stream, None, "SweepStarted")[-1][1]
            sweep = started["sweep_id"]
            assert started["total"] == 2
            running = set()
            created = {}
            for name, data in within(stream):
                event = json.loads(data)
                kind = event_of(name, event, sweep)
                if kind == "RunCreated":
                    created[event["index"]] = event
                elif kind == "RunStateChanged" and event["state"] == "running":
                    running.add(event["index"])
                    if running == {0, 1}:
                        break
            assert sorted(created) == [0, 1] and created[1]["params"] == {"n": 4}

            item = listed(client, sweep)
            assert (item["live"], item["via_daemon"], item["state"]) == (True, False, "running")
            assert item["objective"] == {"metric": "loss", "goal": "minimize"}
            assert item["best"] is None

            gate.touch()
            rest = events_until(stream, sweep, "SweepFinished")
            assert proc.wait(timeout=30) == 0
        finally:
            gate.touch()
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            assert proc.stderr is not None
            proc.stderr.close()
    reports = {e["index"]: (e["step"], e["values"]) for n, e in rest if n == "MetricReported"}
    assert reports == {0: (7, {"loss": 5.0}), 1: (7, {"loss": 4.0})}
    ends = {e["index"]: e for n, e in rest if n == "RunStateChanged" and e["state"] == "succeeded"}
    assert sorted(ends) == [0, 1] and ends[0]["previous"] == "running"
    assert ends[0]["exit_code"] == 0
    assert rest[-1][1]["counts"] == {"succeeded": 2} and rest[-1][1]["state"] == "succeeded"
    with daemon.unix() as client:
        item = listed(client, sweep)
        assert (item["live"], item["done"], item["best"]["index"]) == (False, 2, 1)
        assert item["best"]["value"] == 4.0


def event_of(name: str, event: dict[str, Any], sweep: str) -> str | None:
    """``name`` when the event is ``sweep``'s."""
    return name if event.get("sweep_id") == sweep else None


def test_the_log_of_a_cli_run_is_followed_to_its_end(daemon: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    spec = tmp_path / "spec.yaml"
    spec.write_text(sweep_spec(GATED, [{"n": 1}], str(gate)))
    proc = cli_run(daemon.home, spec)
    try:
        with daemon.unix() as client, open_events(client) as events:
            stream = sse(events)
            created = events_until(stream, None, "RunCreated")[-1][1]
            run = created["run_id"]
            with client.stream("GET", f"/api/v1/runs/{run}/logs?follow=1") as log:
                lines = []
                for name, data in within(sse(log)):
                    if name == "end":
                        break
                    lines += data.split("\n")
                    if "before gate" in lines:
                        gate.touch()  # the rest is written once the follow has begun
        assert lines[:2] == ["before gate", "after gate"]
        assert json.loads(lines[2]) == {"metrics": {"loss": 1.0}, "step": 7}
        assert proc.wait(timeout=30) == 0
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
