"""Pipelines run by the daemon, for real: submitted through the API, their events and their
nodes' on the feed, stopped, resumed after a kill -9 of the daemon, and under its --max-runs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import daemon_process
from tests.integration.dag_helpers import (
    PY,
    dag_spec,
    expect_up,
    intervals,
    node_states,
    peak,
    ran,
    rows,
    wait_until_up,
)
from tests.integration.test_daemon import Daemon, sse, start_daemon
from tests.procwait import gone_within

CHAIN = """
- {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
- name: b
  dagRef: step
  params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}}
- name: c
  dagRef: step
  dependencies: [b]
  params: {n: {value: "c-{{ ops.a.inputs.n }}"}, x: {value: "{{ ops.b.outputs.y }}"}}
"""


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with daemon_process(start_daemon, stop_timeout=30) as (home, proc):
        yield Daemon(home, proc)


def submit(client: httpx.Client, spec: Path) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/sweeps",
        json={"spec": spec.read_text(), "base_dir": str(spec.parent), "spec_path": str(spec)},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def finished_until(events: Iterator[tuple[str, str]], last: str) -> list[dict[str, Any]]:
    """Every SweepFinished on the feed, up to the one of sweep ``last`` (included)."""
    seen = []
    for kind, data in events:
        if kind == "SweepFinished":
            seen.append(json.loads(data))
            if seen[-1]["sweep_id"] == last:
                return seen
    raise AssertionError(f"the feed ended before {last[:12]} finished: {seen}")


def test_a_pipeline_runs_in_the_daemon_with_its_nodes_events(
    daemon: Daemon, tmp_path: Path
) -> None:
    spec = dag_spec(tmp_path, CHAIN)
    with daemon.unix() as client:
        refused = client.post("/api/v1/sweeps", json={"spec": spec.read_text(), "open": True})
        assert refused.status_code == 400
        assert refused.json()["error"] == "open: a pipeline cannot be an open sweep"
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        answer = submit(client, spec)
        assert (answer["kind"], answer["runs"], answer["warnings"]) == ("dag", 3, [])
        dag = answer["sweep"]
        ends = finished_until(sse(events), dag)
        detail = client.get(f"/api/v1/sweeps/{dag}").json()
    nodes = {n["name"]: n for n in detail["nodes"]}
    assert detail["state"] == "succeeded"
    assert [n["runs"][0]["params"]["x"] for n in detail["nodes"]] == [1, 2.0, 4.0]
    assert nodes["c"]["runs"][0]["outputs"] == {"y": 8.0}
    assert ran(tmp_path) == ["a", "b", "c-a"]
    mine = [e for e in ends if e["sweep_id"] in {dag} | {n["sweep_id"] for n in detail["nodes"]}]
    assert [e["sweep_id"] for e in mine] == [nodes[x]["sweep_id"] for x in "abc"] + [dag]
    assert {e["state"] for e in mine} == {"succeeded"}, "the pipeline's own event comes last"


def test_stop_a_pipeline_through_the_api(daemon: Daemon, tmp_path: Path) -> None:
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - name: b
          dagRef: step
          params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}, mode: {value: block-once}}
        - {name: c, dagRef: step, dependencies: [b], params: {n: {value: c}, x: {value: 1}}}
        """,
    )
    up = expect_up(tmp_path, "b")
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        dag = submit(client, spec)["sweep"]
        wait_until_up(up)
        stopped = client.post(f"/api/v1/sweeps/{dag[:10]}/stop")
        assert stopped.status_code == 202 and stopped.json()["sweep"] == dag
        end = finished_until(sse(events), dag)[-1]
        # An API read flushes the daemon's journal: the run's RUNNING (and pid) is in it.
        assert client.get(f"/api/v1/sweeps/{dag}").status_code == 200
        (pid,) = rows(
            daemon.home,
            "SELECT r.pid FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
            "WHERE s.node = 'b' AND r.pid IS NOT NULL",
        )[0]
    assert (end["state"], end["reason"]) == ("stopped", "stopped through the API")
    assert node_states(daemon.home, dag) == {"a": "succeeded", "b": "stopped", "c": "stopped"}
    assert gone_within(int(str(pid)), 30), "the blocked run's process is gone"
    assert ran(tmp_path) == ["a"]


def test_stopping_a_node_stops_that_node_alone(daemon: Daemon, tmp_path: Path) -> None:
    spec = dag_spec(
        tmp_path,
        """
        - {name: b, dagRef: step, params: {n: {value: b}, x: {value: 1}, mode: {value: block-once}}}
        - {name: side, dagRef: step, dependencies: [b], trigger: all_done,
           params: {n: {value: side}, x: {value: 1}}}
        - {name: c, dagRef: step, dependencies: [b], params: {n: {value: c}, x: {value: 1}}}
        """,
    )
    up = expect_up(tmp_path, "b")
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        dag = submit(client, spec)["sweep"]
        wait_until_up(up)
        (node,) = rows(daemon.home, "SELECT id FROM sweeps WHERE node = 'b'")[0]
        assert client.post(f"/api/v1/sweeps/{node}/stop").status_code == 202
        end = finished_until(sse(events), dag)[-1]
    assert node_states(daemon.home, dag) == {
        "b": "stopped",
        "side": "succeeded",
        "c": "upstream_failed",
    }
    assert end["state"] == "succeeded", "Polyaxon's rule: no node failed, not all stopped"
    assert ran(tmp_path) == ["side"]


def test_a_pipeline_resumes_after_a_kill_9_of_the_daemon(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - {name: side, dagRef: step, params: {n: {value: side}, x: {value: 1}}}
        - name: b
          dagRef: step
          params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}, mode: {value: block-once}}
        - name: c
          dagRef: step
          params: {n: {value: c}, x: {ref: ops.b, value: outputs.y}}
        """,
    )
    up = expect_up(tmp_path, "b")
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(start_daemon(home))
        with Daemon(home, procs[0]).unix() as client:
            dag = submit(client, spec)["sweep"]
            wait_until_up(up)  # b's first run is up, and blocks: kill the daemon now
            procs[0].kill()
        assert gone_within(procs[0].pid, 30)
        assert Counter(ran(tmp_path)) == {"a": 1, "side": 1}
        (b_sweep,) = rows(home, "SELECT id FROM sweeps WHERE node = 'b'")[0]
        procs.append(start_daemon(home))
        with (
            Daemon(home, procs[1]).unix() as client,
            client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as events,
        ):
            stream = sse(events)
            lost = finished_until(stream, dag)[-1]  # recovery announces the loss first
            assert (lost["state"], lost["reason"]) == ("failed", "orchestrator_lost")
            end = finished_until(stream, dag)[-1]
            detail = client.get(f"/api/v1/sweeps/{dag}").json()
        assert end["state"] == "succeeded"
        assert node_states(home, dag) == dict.fromkeys(["a", "side", "b", "c"], "succeeded")
        assert Counter(ran(tmp_path)) == {"a": 1, "side": 1, "b": 1, "c": 1}, "none ran twice"
        nodes = {n["name"]: n for n in detail["nodes"]}
        assert nodes["b"]["sweep_id"] == b_sweep, "the interrupted node resumed as itself"
        assert nodes["c"]["runs"][0]["params"]["x"] == 4.0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
            if proc.stderr is not None:
                proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def test_max_runs_bounds_a_pipeline_and_a_sweep_together(tmp_path: Path) -> None:
    """--max-runs 3 over a pipeline (dag.concurrency 2, four nodes) and a 4-run sweep: the
    runs' own start and end stamps never overlap more than the bounds allow."""
    nodes = "\n".join(
        f"- {{name: p{i}, dagRef: step, params: {{n: {{value: p{i}}}, x: {{value: 1}}, "
        "mode: {value: hold}}}"
        for i in range(4)
    )
    spec = dag_spec(tmp_path, nodes, head="concurrency: 2")
    marks, script = tmp_path / "marks", tmp_path / "step.py"
    sweep = (
        "version: 1.1\nkind: operation\n"
        "matrix: {kind: mapping, values: [{i: 0}, {i: 1}, {i: 2}, {i: 3}]}\n"
        "component:\n  inputs: [{name: i, type: int}]\n"
        f"  run: {{kind: job, container: {{command: {json.dumps([PY, str(script)])[:-1]}, "
        f'"s{{{{ i }}}}", "1", "{marks}", "hold"]}}}}\n'
    )
    with (
        daemon_process(lambda home: start_daemon(home, max_runs=3), stop_timeout=30) as (
            home,
            proc,
        ),
        Daemon(home, proc).unix() as client,
        client.stream("GET", "/api/v1/events") as events,
    ):
        dag = submit(client, spec)["sweep"]
        other = client.post("/api/v1/sweeps", json={"spec": sweep})
        assert other.status_code == 201, other.text
        waiting = {dag, other.json()["sweep"]}
        for kind, data in sse(events):
            if kind == "SweepFinished":
                waiting.discard(json.loads(data)["sweep_id"])
                if not waiting:
                    break
        assert node_states(home, dag) == dict.fromkeys(["p0", "p1", "p2", "p3"], "succeeded")
    names = ran(tmp_path)
    assert sorted(names) == ["p0", "p1", "p2", "p3", "s0", "s1", "s2", "s3"]
    spans = intervals(tmp_path)
    assert peak(spans) <= 3, "the daemon's --max-runs"
    assert peak([s for s, n in zip(spans, names, strict=True) if n.startswith("p")]) <= 2


def test_sigterm_stops_the_daemons_pipelines_cleanly(tmp_path: Path) -> None:
    spec = dag_spec(
        tmp_path,
        """
        - {name: b, dagRef: step, params: {n: {value: b}, x: {value: 1}, mode: {value: block-once}}}
        - {name: c, dagRef: step, dependencies: [b], params: {n: {value: c}, x: {value: 1}}}
        """,
    )
    up = expect_up(tmp_path, "b")
    with daemon_process(start_daemon, stop_timeout=30) as (home, proc):
        with Daemon(home, proc).unix() as client:
            dag = submit(client, spec)["sweep"]
            wait_until_up(up)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        # Read once the daemon is gone: a run's pid is journaled with its RUNNING, which
        # the writer may still hold (up to its linger) when the run says it is up.
        (pid,) = rows(
            home,
            "SELECT r.pid FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
            "WHERE s.node = 'b' AND r.pid IS NOT NULL",
        )[0]
        assert rows(home, "SELECT state, reason FROM sweeps WHERE id = ?", dag) == [
            ("stopped", "the daemon is shutting down")
        ]
        assert node_states(home, dag) == {"b": "stopped", "c": "stopped"}
        assert gone_within(int(str(pid)), 30), "the blocked run's process is gone"
    assert ran(tmp_path) == []
