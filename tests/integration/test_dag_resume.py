"""Pipelines that stop part-way: kill -9 of the orchestrator then ``resume`` (no finished node
runs again), ``rerun --failed`` (failed nodes and those that did not run because of them),
and a stop (SIGTERM) that stops the running nodes."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.integration.dag_helpers import (
    PY,
    dag_spec,
    expect_up,
    node_states,
    ran,
    rows,
    wait_until_up,
)
from tests.procwait import gone_within

ROOT = Path(__file__).resolve().parents[2]


def start(spec: Path, home: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", "run", "-f", str(spec), "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc


def wait_for_line(proc: subprocess.Popen[str], *needles: str) -> list[str]:
    """Read stderr until a line holds every needle (the pipeline's progress lines); the lines
    read. Ends when the process closes stderr (the test's timeout bounds it)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if all(needle in line for needle in needles):
            return seen
    raise AssertionError(f"never printed {needles}: {''.join(seen)}")


def pipeline_id(lines: list[str]) -> str:
    first = next(line for line in lines if line.startswith("pipeline "))
    return first.split()[1]


def test_kill_9_mid_dag_then_resume_runs_no_finished_node_again(
    tmp_path: Path, cli: Callable[..., CliResult], procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "home"
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
    proc = start(spec, home, procs)
    dag = pipeline_id(wait_for_line(proc, "pipeline "))
    wait_until_up(up)  # b's first run is up, and blocks: kill the orchestrator now
    (b_sweep,) = rows(home, "SELECT id FROM sweeps WHERE node = 'b'")[0]
    proc.send_signal(signal.SIGKILL)
    assert gone_within(proc.pid, 30)
    assert Counter(ran(tmp_path)) == {"a": 1, "side": 1}

    result = cli("resume", dag[:8], "--json", "--home", str(home))
    assert result.code == 0, result.err
    assert "recovered: sweep" in result.err
    body = json.loads(result.out)
    assert body["state"] == "succeeded"
    assert node_states(home, body["sweep"]) == dict.fromkeys(["a", "side", "b", "c"], "succeeded")
    assert Counter(ran(tmp_path)) == {"a": 1, "side": 1, "b": 1, "c": 1}, "no node ran twice"
    nodes = {n["name"]: n for n in body["nodes"]}
    assert nodes["b"]["sweep_id"] == b_sweep, "the interrupted node resumed as its own sweep"
    assert nodes["c"]["runs"][0]["params"]["x"] == 4.0
    story = [
        str(r[0])
        for r in rows(
            home,
            "SELECT to_state FROM transitions WHERE sweep_id = ? AND run_id IS NULL",
            body["sweep"],
        )
    ]
    assert story == ["running", "failed", "running", "succeeded"]


def test_rerun_failed_reruns_failed_nodes_and_those_they_held_back(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: ok, dagRef: step, params: {n: {value: ok}, x: {value: 1}}}
        - {name: flaky, dagRef: step, params: {n: {value: flaky}, x: {value: 1},
           mode: {value: fail-if-broken}}}
        - name: after
          dagRef: step
          params: {n: {value: after}, x: {ref: ops.flaky, value: outputs.y}}
        - {name: cleanup, dagRef: step, dependencies: [after], trigger: all_done,
           params: {n: {value: cleanup}, x: {value: 0}}}
        """,
    )
    (tmp_path / "marks").mkdir(exist_ok=True)
    broken = tmp_path / "marks" / "broken"
    broken.touch()
    first = cli("run", "-f", str(spec), "--json", "--home", str(home))
    assert first.code == 1
    body = json.loads(first.out)
    assert node_states(home, body["sweep"]) == {
        "ok": "succeeded",
        "flaky": "failed",
        "after": "upstream_failed",
        "cleanup": "succeeded",
    }
    broken.unlink()
    again = cli("rerun", body["sweep"][:8], "--failed", "--json", "--home", str(home))
    assert again.code == 0, again.err
    assert json.loads(again.out)["state"] == "succeeded"
    assert node_states(home, body["sweep"]) == dict.fromkeys(
        ["ok", "flaky", "after", "cleanup"], "succeeded"
    )
    # ok and cleanup (succeeded) are not run again; flaky and after run now.
    assert Counter(ran(tmp_path)) == {"ok": 1, "cleanup": 1, "flaky": 1, "after": 1}
    listed = json.loads(cli("ls", "--json", "--home", str(home)).out)
    assert [s["id"] for s in listed] == [body["sweep"]]


def test_resuming_a_node_sweep_alone_is_refused(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(tmp_path, "- {name: a, dagRef: step, params: {n: {value: a}, x: {value: -1}}}")
    body = json.loads(cli("run", "-f", str(spec), "--json", "--home", str(home)).out)
    node = body["nodes"][0]["sweep_id"]
    refused = cli("resume", node, "--home", str(home))
    assert refused.code == 2
    assert f"is node 'a' of pipeline {body['sweep'][:12]}" in refused.err
    assert "Traceback" not in refused.err


def test_sigterm_stops_the_pipeline_and_its_running_nodes(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "home"
    spec = dag_spec(
        tmp_path,
        """
        - {name: one, dagRef: step, params: {n: {value: one}, x: {value: 1},
           mode: {value: block-once}}}
        - {name: two, dagRef: step, params: {n: {value: two}, x: {value: 1},
           mode: {value: block-once}}}
        - {name: later, dagRef: step, dependencies: [one, two],
           params: {n: {value: later}, x: {value: 1}}}
        """,
    )
    pipes = [expect_up(tmp_path, "one"), expect_up(tmp_path, "two")]
    proc = start(spec, home, procs)
    short = pipeline_id(wait_for_line(proc, "pipeline "))
    for pipe in pipes:
        wait_until_up(pipe)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 1
    dag = str(rows(home, "SELECT id FROM sweeps WHERE id LIKE ?", short + "%")[0][0])
    assert node_states(home, dag) == {"one": "stopped", "two": "stopped", "later": "stopped"}
    state = rows(home, "SELECT state, reason FROM sweeps WHERE id = ?", dag)
    assert state == [("stopped", "interrupted (SIGTERM)")]
    assert ran(tmp_path) == []
