"""What the web page reads of a pipeline, for real: a diamond pipeline run by the CLI in a
daemon's home; its nodes' events on the daemon's stream, the list (the pipeline, not its
nodes), and its detail (nodes in order with what each waits for, their times and runs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.recovery import open_journal
from orchestrator.history import sweep_detail
from tests.conftest import CliResult
from tests.daemon_process import daemon_process
from tests.integration.dag_helpers import dag_spec
from tests.integration.test_daemon import Daemon, sse, start_daemon
from tests.integration.test_web_api import cli_run, open_events, within

DIAMOND = """
- {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
- {name: b, dagRef: step, dependencies: [a], params: {n: {value: b}, x: {value: 2}}}
- name: c
  dagRef: step
  params: {n: {value: c}, x: {ref: ops.a, value: outputs.y}}
  matrix:
    kind: grid
    params: {mode: {kind: choice, value: ["", "hold-not"]}}
    earlyStopping: [{kind: metric_early_stopping, metric: y, value: 1000, optimization: maximize}]
- {name: d, dagRef: step, dependencies: [b, c], params: {n: {value: d}, x: {value: -1}}}
"""


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with daemon_process(start_daemon, stop_timeout=20) as (home, proc):
        yield Daemon(home, proc)


def run_until_finished(daemon: Daemon, spec: Path) -> tuple[str, list[dict[str, Any]]]:
    """Run the pipeline with the CLI; the id of the sweep that finished last on the stream
    (the pipeline) and every event of the run, as the daemon streamed them."""
    seen: list[dict[str, Any]] = []
    with daemon.unix() as client, open_events(client) as events:
        proc = cli_run(daemon.home, spec)
        try:
            started: set[str] = set()
            for name, data in within(sse(events)):
                event = json.loads(data) if data.startswith("{") else {}
                seen.append(event | {"type": name})
                if name == "SweepStarted":
                    started.add(event["sweep_id"])
                if name == "SweepFinished" and len(started) == 5:  # 4 nodes and the pipeline
                    finished = {e["sweep_id"] for e in seen if e["type"] == "SweepFinished"}
                    if finished == started:
                        break
            assert proc.wait(timeout=30) == 1, "node d fails (x < 0): the pipeline fails"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            assert proc.stderr is not None
            proc.stderr.close()
    return seen[-1]["sweep_id"], seen


def test_a_pipeline_reads_as_the_page_needs_it(daemon: Daemon, tmp_path: Path) -> None:
    spec = dag_spec(tmp_path, DIAMOND)
    pipeline, events = run_until_finished(daemon, spec)

    with daemon.unix() as client:
        listed = client.get("/api/v1/sweeps").json()
        detail = client.get(f"/api/v1/sweeps/{pipeline}").json()
        nodes = detail["nodes"]
        node_c = client.get(f"/api/v1/sweeps/{nodes[2]['sweep_id']}").json()

    # The list: the pipeline alone (its nodes belong to it), its counts of nodes.
    assert [(s["id"], s["kind"], s["state"]) for s in listed] == [(pipeline, "dag", "failed")]
    assert listed[0]["counts"] == {"failed": 1, "succeeded": 3}

    # The detail: the nodes in the order they were decided, with what each waits for.
    assert detail["kind"] == "dag" and detail["state"] == "failed"
    assert [(n["name"], n["upstream"]) for n in nodes] == [
        ("a", []),
        ("b", ["a"]),
        ("c", ["a"]),
        ("d", ["b", "c"]),
    ]
    # What a node's best run is judged by: its matrix's objective, never guessed.
    maximize_y = {"metric": "y", "goal": "maximize"}
    assert [n["objective"] for n in nodes] == [None, None, maximize_y, None]
    assert [(n["kind"], n["total"], len(n["runs"])) for n in nodes] == [
        ("single", 1, 1),
        ("single", 1, 1),
        ("grid", 2, 2),
        ("single", 1, 1),
    ]
    assert [n["state"] for n in nodes] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert nodes[3]["reason"] == "1 of 1 runs failed"
    for node in nodes:
        assert node["started"] >= detail_started(listed[0]) - 1
        assert node["duration_s"] >= 0
    assert nodes[2]["runs"][1]["outputs"] == {"y": 4.0}  # a's output passed downstream

    # A node's own detail names its pipeline and node.
    assert (node_c["parent"], node_c["node"]) == (pipeline, "c")

    # Every node's start and end reached the daemon's stream, under the node's own id.
    for node in nodes:
        kinds = [e["type"] for e in events if e.get("sweep_id") == node["sweep_id"]]
        assert kinds[0] == "SweepStarted" and kinds[-1] == "SweepFinished", node["name"]
        assert "RunStateChanged" in kinds


def detail_started(item: dict[str, Any]) -> float:
    return float(item["started"])


def test_a_pipeline_whose_spec_is_gone_shows_its_nodes_without_edges(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(tmp_path, DIAMOND)
    assert cli("run", "-f", str(spec), "--home", str(home)).code == 1
    spec.unlink()
    journal = open_journal(home / "journal.sqlite")
    try:
        nodes = sweep_detail(journal, "last")["nodes"]
    finally:
        journal.close()
    assert [(n["name"], n["upstream"]) for n in nodes] == [
        ("a", None),
        ("b", None),
        ("c", None),
        ("d", None),
    ]
