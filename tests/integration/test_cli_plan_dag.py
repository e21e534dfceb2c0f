"""``plan`` of a pipeline through the real command line: nodes in order, edges, triggers,
conditions, each node's runs (``--limit`` per node), placeholders for upstream values, JSON,
one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """
version: 1.1
kind: component
name: chain
inputs:
- {name: rate, type: float, value: 0.5}
run:
  kind: dag
  concurrency: 2
  operations:
  - name: prepare
    dagRef: prep
    params:
      size: {ref: dag, value: inputs.rate}
  - name: train
    dagRef: train
    params:
      data: {ref: ops.prepare, value: outputs.data}
    matrix: {kind: grid, params: {lr: {kind: choice, value: [0.1, 0.2, 0.3]}}}
    conditions: "{{ data != '' }}"
  - name: report
    dagRef: report
    dependencies: [train]
    trigger: all_done
    joins:
    - {query: "status: succeeded", sort: "metrics.loss", limit: 2,
       params: {losses: {value: outputs.loss}}}
  components:
  - name: prep
    inputs: [{name: size, type: float}]
    outputs: [{name: data, type: path}]
    run: {kind: job, container: {command: [echo, "{{ size }}"]}}
  - name: train
    inputs: [{name: data, type: str}, {name: lr, type: float}]
    outputs: [{name: loss, type: float}]
    run: {kind: job, container: {command: [echo, "{{ data }}", "--lr={{ lr }}"]}}
  - name: report
    inputs: [{name: losses, type: float, isList: true}]
    run: {kind: job, container: {command: [echo, "{{ losses }}"]}}
"""


def pipeline(tmp_path: Path, text: str = PIPELINE) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_text_plan_lists_nodes_edges_and_runs(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    result = cli("plan", str(pipeline(tmp_path)), "--limit", "2", "-P", "rate=0.75")
    assert result.code == 0, result.err
    out = result.out
    assert out.splitlines()[0].endswith("pipeline.yaml: DAG, 3 operations, concurrency 2")
    assert out.index("prepare: 1 run") < out.index("train: 3 runs") < out.index("report: 1 run")
    assert "train: 3 runs (grid), showing 2 of 3" in out
    assert "after: prepare (trigger all_succeeded)" in out
    assert "after: train (trigger all_done)" in out
    assert "runs only if: {{ data != '' }}" in out
    assert "$ echo 0.75" in out  # ref: dag reads the DAG's input, -P included
    assert "$ echo '<ops.prepare.outputs.data>' --lr=0.2" in out
    assert "--lr=0.3" not in out  # --limit 2 per node
    assert "losses=<joins[0].outputs.loss>" in out


def test_json_plan_shape(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", str(pipeline(tmp_path)), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["kind"] == "dag" and data["name"] == "chain" and data["concurrency"] == 2
    assert data["levels"] == [["prepare"], ["train"], ["report"]]
    names = [node["name"] for node in data["nodes"]]
    assert names == ["prepare", "train", "report"]
    prepare, train, report = data["nodes"]
    assert prepare["upstream"] == [] and prepare["runs"][0]["argv"] == ["echo", "0.5"]
    assert train["upstream"] == ["prepare"] and train["matrix"] == "grid" and train["total"] == 3
    assert [r["params"]["lr"] for r in train["runs"]] == [0.1, 0.2, 0.3]
    assert train["runs"][0]["params"]["data"] == "<ops.prepare.outputs.data>"
    assert train["conditions"] == "{{ data != '' }}"
    assert report["trigger"] == "all_done" and report["joins"] == 1
    assert report["upstream"] == ["train"]


def test_dag_errors_are_one_line_exit_2(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    cyclic = PIPELINE.replace("dependencies: [train]", "dependencies: [train, report]")
    result = cli("plan", str(pipeline(tmp_path, cyclic)))
    assert result.code == 2
    assert result.err.count("\n") == 1, result.err
    assert "run.operations: the pipeline's graph is not acyclic: report → report" in result.err
    missing = PIPELINE.replace("value: outputs.data}", "value: outputs.nothing}")
    result = cli("plan", str(pipeline(tmp_path, missing)))
    assert result.code == 2
    assert "run.operations[1].params.data.value" in result.err
    assert "'outputs.nothing', but operation 'prepare' has no such information" in result.err
