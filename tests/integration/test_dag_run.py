"""Pipelines run for real: nodes as sweeps, triggers, conditions, upstream outputs, a matrix
node, dag.concurrency across nodes, early stopping, and show/ls/logs of what ran."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.integration.dag_helpers import PY, dag_spec, intervals, node_states, peak, ran, rows


def run_dag(cli: Callable[..., CliResult], spec: Path, home: Path, *args: str) -> CliResult:
    return cli("run", "-f", str(spec), "--home", str(home), *args)


def test_a_chain_passes_outputs_downstream_and_shows_as_a_tree(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - name: b
          dagRef: step
          params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}}
        - name: c
          dagRef: step
          dependencies: [b]
          params: {n: {value: "c-{{ ops.a.inputs.n }}"}, x: {value: "{{ ops.b.outputs.y }}"}}
        """,
    )
    result = run_dag(cli, spec, home, "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["state"] == "succeeded"
    assert body["nodes"][2]["runs"][0]["params"]["n"] == "c-a"  # the {{ ops... }} context
    assert [n["name"] for n in body["nodes"]] == ["a", "b", "c"]
    assert [n["runs"][0]["params"]["x"] for n in body["nodes"]] == [1, 2.0, 4.0]
    assert body["nodes"][2]["runs"][0]["outputs"] == {"y": 8.0}
    assert ran(tmp_path) == ["a", "b", "c-a"]
    for name in "abc":  # a line per node start and end, as it happens
        assert f"node {name} started" in result.err
        assert f"node {name} succeeded" in result.err

    listed = json.loads(cli("ls", "--json", "--home", str(home)).out)
    assert [(s["id"], s["kind"]) for s in listed] == [(body["sweep"], "dag")], "nodes not listed"
    assert listed[0]["counts"] == {"succeeded": 3}

    tree = cli("show", body["sweep"][:8], "--home", str(home))
    assert tree.code == 0, tree.err
    lines = tree.out.splitlines()
    assert lines[0].startswith(f"pipeline {body['sweep'][:12]} pipe succeeded")
    assert [line.split(":")[0] for line in lines if line.startswith("node ")] == [
        "node a",
        "node b",
        "node c",
    ]

    node_c = body["nodes"][2]
    alone = json.loads(cli("show", node_c["sweep_id"], "--json", "--home", str(home)).out)
    assert alone["node"] == "c" and alone["parent"] == body["sweep"]
    assert alone["runs"][0]["outputs"] == {"y": 8.0}
    logs = cli("logs", f"{node_c['sweep_id']}:0", "--home", str(home))
    assert logs.code == 0, logs.err
    assert '"y": 8.0' in logs.out


def test_a_diamond_with_one_failed_and_all_done(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: -1}}}
        - {name: on_fail, dagRef: step, dependencies: [a], trigger: one_failed,
           params: {n: {value: on_fail}, x: {value: 1}}}
        - {name: on_success, dagRef: step, dependencies: [a],
           params: {n: {value: on_success}, x: {value: 1}}}
        - {name: last, dagRef: step, dependencies: [on_fail, on_success], trigger: all_done,
           params: {n: {value: last}, x: {value: 1}}}
        """,
    )
    result = run_dag(cli, spec, home, "--json")
    assert result.code == 1
    body = json.loads(result.out)
    assert body["state"] == "failed"
    assert body["reason"] == "1 node(s) failed: a"
    states = {n["name"]: n["state"] for n in body["nodes"]}
    assert states == {
        "a": "failed",
        "on_fail": "succeeded",
        "on_success": "upstream_failed",
        "last": "succeeded",
    }
    reasons = {n["name"]: n["reason"] for n in body["nodes"]}
    assert reasons["on_success"] == "trigger all_succeeded cannot be met (a failed)"
    runs = {n["name"]: n["runs"] for n in body["nodes"]}
    assert runs["on_success"] == [], "an upstream_failed node never ran"
    assert sorted(ran(tmp_path)) == ["a", "last", "on_fail"]


def test_a_false_condition_skips_and_skip_on_upstream_skip(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - name: big
          dagRef: step
          conditions: "{{ x > 100 }}"
          params: {n: {value: big}, x: {ref: ops.a, value: outputs.y}}
        - {name: follows, dagRef: step, dependencies: [big], skipOnUpstreamSkip: true,
           params: {n: {value: follows}, x: {value: 1}}}
        - {name: insists, dagRef: step, dependencies: [big],
           params: {n: {value: insists}, x: {value: 1}}}
        """,
    )
    result = run_dag(cli, spec, home, "--json")
    body = json.loads(result.out)
    states = {n["name"]: (n["state"], n["reason"]) for n in body["nodes"]}
    assert states["big"] == ("skipped", "conditions are false")
    assert states["follows"][0] == "skipped"
    # Skipped is done but not succeeded: all_succeeded cannot be met (Polyaxon's rule).
    assert states["insists"][0] == "upstream_failed"
    # No node failed: the pipeline succeeded (upstream_failed does not count, as in Polyaxon).
    assert body["state"] == "succeeded", body
    assert result.code == 0
    assert ran(tmp_path) == ["a"]


def test_a_matrix_node_runs_as_a_nested_sweep_within_dag_concurrency(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Two matrix nodes side by side, each allowed 3 at once by its matrix: the pipeline's
    concurrency (2) bounds all their runs together; the node's end state drives the trigger."""
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - name: left
          dagRef: step
          matrix: {kind: grid, concurrency: 3, params: {x: {kind: choice, value: [1, 2, 3]}}}
          params: {n: {value: left}, mode: {value: hold}}
        - name: right
          dagRef: step
          matrix: {kind: grid, concurrency: 3, params: {x: {kind: choice, value: [4, 5, 6]}}}
          params: {n: {value: right}, mode: {value: hold}}
        - {name: after, dagRef: step, dependencies: [left, right],
           params: {n: {value: after}, x: {value: 0}}}
        """,
        head="concurrency: 2",
    )
    result = run_dag(cli, spec, home, "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    nodes = {n["name"]: n for n in body["nodes"]}
    assert len(nodes["left"]["runs"]) == 3 and len(nodes["right"]["runs"]) == 3
    assert nodes["left"]["kind"] == "grid"
    assert nodes["after"]["state"] == "succeeded"
    spans = intervals(tmp_path)
    assert len(spans) == 7
    assert peak(spans) <= 2, "dag.concurrency bounds the runs of all nodes together"
    assert ran(tmp_path)[-1] == "after"
    parents = rows(home, "SELECT count(*) FROM sweeps WHERE parent_id = ?", body["sweep"])
    assert parents == [(3,)]


def test_metric_early_stopping_ends_the_pipeline_succeeded_and_stops_the_rest(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - name: search
          dagRef: step
          matrix: {kind: grid, concurrency: 1, params: {x: {kind: choice, value: [1, 5, 2, 3]}}}
          params: {n: {value: search}}
        - {name: after, dagRef: step, dependencies: [search],
           params: {n: {value: after}, x: {value: 0}}}
        """,
        head="""
        earlyStopping:
        - {kind: metric_early_stopping, metric: y, value: 10, optimization: maximize}
        """,
    )
    result = run_dag(cli, spec, home, "--json")
    body = json.loads(result.out)
    # As a matrix's target: the pipeline succeeded; what still ran or waited is stopped.
    assert body["state"] == "succeeded"
    assert body["reason"] == "early stopping: y = 10 >= 10"
    states = {n["name"]: n["state"] for n in body["nodes"]}
    assert states == {"search": "stopped", "after": "stopped"}
    assert "after" not in ran(tmp_path)
    assert result.code == 0


def test_failure_early_stopping_counts_nodes(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: bad, dagRef: step, params: {n: {value: bad}, x: {value: -1}}}
        - {name: child, dagRef: step, dependencies: [bad],
           params: {n: {value: child}, x: {value: 1}}}
        - {name: other, dagRef: step, dependencies: [child], trigger: all_done,
           params: {n: {value: other}, x: {value: 1}}}
        """,
        head="""
        earlyStopping: [{kind: failure_early_stopping, percent: 60}]
        """,
    )
    body = json.loads(run_dag(cli, spec, home, "--json").out)
    # bad failed, child upstream_failed: 2 of 3 nodes (>= 60%): the pipeline stops.
    assert body["state"] == "stopped"
    assert body["reason"].startswith("early stopping: 2 of 3 nodes failed")
    assert node_states(home, body["sweep"])["other"] == "stopped"
    assert ran(tmp_path) == ["bad"]


def test_a_daemon_runs_a_submitted_pipeline_and_resumes_it(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """``orchestrator submit`` of a pipeline, then ``orchestrator resume`` handed to the
    daemon: the node that succeeded is kept, the failed one runs again."""
    from tests.daemon_process import daemon_process
    from tests.integration.test_daemon import Daemon, sse, start_daemon

    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - name: b
          dagRef: step
          params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}, mode: {value: fail-if-flag}}
        """,
    )
    (tmp_path / "marks" / "flag").touch()

    def ends(events: Any, dag: str) -> str:
        for kind, data in sse(events):
            if kind == "SweepFinished" and json.loads(data)["sweep_id"] == dag:
                return str(json.loads(data)["state"])
        raise AssertionError("the feed ended first")

    with (
        daemon_process(start_daemon, stop_timeout=20) as (home, proc),
        Daemon(home, proc).unix() as client,
    ):
        with client.stream("GET", "/api/v1/events") as events:
            submitted = cli("submit", str(spec), "--home", str(home))
            assert submitted.code == 0, submitted.err
            words = submitted.out.split()
            assert words[:2] == ["submitted", "pipeline"] and words[3:] == ["(2", "nodes)"]
            dag = words[2]
            assert ends(events, dag) == "failed"
        assert node_states(home, dag) == {"a": "succeeded", "b": "failed"}
        (tmp_path / "marks" / "flag").unlink()
        with client.stream("GET", "/api/v1/events") as events:
            resumed = cli("resume", dag[:10], "--home", str(home))
            assert resumed.code == 0, resumed.err
            assert f"the daemon resumes sweep {dag}" in resumed.out
            assert ends(events, dag) == "succeeded"
        detail = client.get(f"/api/v1/sweeps/{dag}").json()
    assert [n["runs"][-1]["params"]["x"] for n in detail["nodes"]] == [1, 2.0]
    assert ran(tmp_path) == ["a", "b"], "a is not run again"


def test_a_join_passes_the_best_two_runs_of_a_matrix_node_downstream(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        f"""
        - name: search
          dagRef: step
          matrix: {{kind: grid, params: {{x: {{kind: choice, value: [3, 1, 6, 2, 5, 4]}}}}}}
          params: {{n: {{value: search}}}}
        - name: best
          dependencies: [search]
          joins:
          - query: "name:search, status:succeeded"
            sort: "-metrics.y"
            limit: 2
            params:
              xs: {{value: inputs.x}}
              ys: {{value: outputs.y}}
          component:
            inputs:
            - {{name: xs, type: float, isList: true}}
            - {{name: ys, type: float, isList: true}}
            run:
              kind: job
              container:
                command: ["{PY}", -c, "import sys; print(sys.argv[1:])", "{{{{ xs }}}}",
                          "{{{{ ys }}}}"]
        """,
    )
    result = run_dag(cli, spec, home, "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    nodes = {n["name"]: n for n in body["nodes"]}
    assert len(nodes["search"]["runs"]) == 6
    (final,) = nodes["best"]["runs"]
    assert final["params"]["xs"] == [6, 5]
    assert final["params"]["ys"] == [12.0, 10.0]


def note_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local hub holding ``note``: a component that writes the status its operation ended
    with (the hook's default ``status`` param) to the file ``file``."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "note.yaml").write_text(
        f"""
version: 1.1
kind: component
name: note
inputs: [{{name: file, type: str}}]
run:
  kind: job
  container:
    command: ["{PY}", -c, "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
              "{{{{ file }}}}", "{{{{ status }}}}"]
"""
    )
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))


def test_hooks_run_after_their_node_and_after_the_pipeline(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's hook on ``succeeded``, another node's on ``failed``, the pipeline's on
    ``done``: each runs once its operation ended, as a sweep of its own, with its status."""
    note_hub(tmp_path, monkeypatch)
    notes = tmp_path / "notes"
    notes.mkdir()
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        f"""
        - name: good
          dagRef: step
          params: {{n: {{value: good}}, x: {{value: 1}}}}
          hooks: [{{hubRef: note, trigger: succeeded, params: {{file: {{value: {notes}/good}}}}}}]
        - name: bad
          dagRef: step
          params: {{n: {{value: bad}}, x: {{value: -1}}}}
          hooks:
          - {{hubRef: note, trigger: succeeded, params: {{file: {{value: {notes}/never}}}}}}
          - {{hubRef: note, trigger: failed, params: {{file: {{value: {notes}/bad}}}}}}
        """,
    )
    text = spec.read_text().replace(
        "run:\n",
        f"hooks: [{{hubRef: note, trigger: done, params: {{file: {{value: {notes}/dag}}}}}}]"
        "\nrun:\n",
        1,
    )
    spec.write_text(text)
    result = run_dag(cli, spec, home, "--json")
    assert result.code == 1
    body = json.loads(result.out)
    assert body["state"] == "failed"
    assert sorted(p.name for p in notes.iterdir()) == ["bad", "dag", "good"]
    assert (notes / "good").read_text() == "succeeded"
    assert (notes / "bad").read_text() == "failed"
    assert (notes / "dag").read_text() == "failed"
    hooks = rows(home, "SELECT node, state FROM sweeps WHERE node LIKE 'hook:%' ORDER BY node")
    assert len(hooks) == 3 and {state for _, state in hooks} == {"succeeded"}
    listed = json.loads(cli("ls", "--json", "--home", str(home)).out)
    assert [s["id"] for s in listed] == [body["sweep"]], "hooks' sweeps are not listed"
    assert {n["name"] for n in body["nodes"]} == {"good", "bad"}


def test_the_cache_is_on_inside_a_pipeline(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    """Polyaxon's rule: a node without ``cache.disable`` is cached (a lone run is not)."""
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - name: b
          dagRef: step
          params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}}
        """,
    )
    assert run_dag(cli, spec, home).code == 0
    again = run_dag(cli, spec, home, "--json")
    assert again.code == 0, again.err
    body = json.loads(again.out)
    assert [n["runs"][0]["reason"] for n in body["nodes"]] == ["cache_hit"] * 2, body
    assert body["nodes"][1]["runs"][0]["params"]["x"] == 2.0
    assert ran(tmp_path) == ["a", "b"], "the second pipeline's nodes came from the cache"
    assert run_dag(cli, spec, home, "--nocache").code == 0
    assert ran(tmp_path) == ["a", "b", "a", "b"]


def test_show_sorts_each_nodes_runs(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - name: search
          dagRef: step
          matrix: {kind: grid, params: {x: {kind: choice, value: [2, 3, 1]}}}
          params: {n: {value: search}}
        """,
    )
    sweep = json.loads(run_dag(cli, spec, home, "--json").out)["sweep"]
    shown = json.loads(cli("show", sweep, "--sort", "-y", "--json", "--home", str(home)).out)
    assert [r["outputs"]["y"] for r in shown["nodes"][0]["runs"]] == [6.0, 4.0, 2.0]


def test_log_json_records_the_pipeline_and_its_nodes(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home, log = tmp_path / "home", tmp_path / "events.jsonl"
    spec = dag_spec(
        tmp_path,
        """
        - {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
        - {name: b, dagRef: step, dependencies: [a], params: {n: {value: b}, x: {value: 2}}}
        """,
    )
    result = run_dag(cli, spec, home, "--json", "--log-json", str(log))
    assert result.code == 0, result.err
    body = json.loads(result.out)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    by_sweep = {e["sweep_id"] for e in events}
    assert by_sweep == {body["sweep"], *(n["sweep_id"] for n in body["nodes"])}
    ends = [e for e in events if e["event"] == "sweep_finished"]
    assert [e["sweep_id"] for e in ends][-1] == body["sweep"], "the pipeline ends last"
    assert len(ends) == 3


def test_a_top_level_sweeps_hooks_run_after_it(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    note_hub(tmp_path, monkeypatch)
    note = tmp_path / "note"
    spec = tmp_path / "op.yaml"
    spec.write_text(
        f"""
version: 1.1
kind: operation
hooks: [{{hubRef: note, trigger: failed, params: {{file: {{value: {note}}}}}}}]
component:
  run: {{kind: job, container: {{command: ["{PY}", -c, "raise SystemExit(2)"]}}}}
"""
    )
    result = cli("run", "-f", str(spec), "--home", str(tmp_path / "home"))
    assert result.code == 1
    assert note.read_text() == "failed"


def test_a_daemon_runs_a_sweeps_hooks_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's sweeps run their hooks as the command line's do: the hook's process
    reports the status it received on a socket the test listens on (no polling)."""
    import socket
    import tempfile

    from tests.daemon_process import daemon_process
    from tests.integration.test_daemon import Daemon, start_daemon

    hub = tmp_path / "hub"
    hub.mkdir()
    tell = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    tell += "s.sendall(sys.argv[2].encode())"
    (hub / "tell.yaml").write_text(
        f"""
version: 1.1
kind: component
name: tell
inputs: [{{name: to, type: str}}]
run:
  kind: job
  container:
    command: ["{PY}", -c, "{tell}", "{{{{ to }}}}", "{{{{ status }}}}"]
"""
    )
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))
    address = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp")) / "s"
    spec = f"""
version: 1.1
kind: operation
hooks: [{{hubRef: tell, trigger: failed, params: {{to: {{value: {address}}}}}}}]
component:
  run: {{kind: job, container: {{command: ["{PY}", -c, "raise SystemExit(2)"]}}}}
"""
    with (
        socket.socket(socket.AF_UNIX) as server,
        daemon_process(start_daemon, stop_timeout=20) as (home, proc),
        Daemon(home, proc).unix() as client,
    ):
        server.bind(str(address))
        server.listen(1)
        server.settimeout(30)
        answer = client.post("/api/v1/sweeps", json={"spec": spec, "base_dir": str(tmp_path)})
        assert answer.status_code in (200, 201, 202), answer.text
        connection, _ = server.accept()
        with connection:
            connection.settimeout(30)
            assert connection.recv(64) == b"failed"
    address.unlink()
    address.parent.rmdir()
