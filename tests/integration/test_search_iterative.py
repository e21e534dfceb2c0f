"""An iterative search end to end: the user's tuner component runs as a process before each
iteration, and its suggestions are the next runs; a failing tuner fails the sweep in one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.unit.test_iterative_search import TUNER_YAML

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: iterative
  maxIterations: 3
  concurrency: 2
  seed: 5
  params:
    lr: {{kind: uniform, value: "0:1"}}
  tuner:
    hubRef: tuner.yaml
    params: {{mode: {{value: {mode}}}}}
component:
  inputs: [{{name: lr, type: float}}]
  run:
    kind: job
    container:
      command: ["{python}", "-c", "{script}"]
"""
SCRIPT = "from orchestrator.tracking import log_metrics; log_metrics(loss=({{ lr }} - 0.3) ** 2)"


def _write(tmp_path: Path, mode: str) -> Path:
    (tmp_path / "tuner.yaml").write_text(TUNER_YAML)
    spec = tmp_path / "iterative.yaml"
    spec.write_text(SPEC.format(python=sys.executable, script=SCRIPT, mode=mode))
    return spec


def test_three_iterations_driven_by_the_tuner_component(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = str(tmp_path / "home")
    result = cli("run", str(_write(tmp_path, "halving")), "--home", home, "--json")
    assert result.code == 0, result.err
    shown = json.loads(cli("show", "last", "--home", home, "--json").out)["runs"]
    assert {r["state"] for r in shown} == {"succeeded"}
    iterations = [r["place"]["iteration"] for r in sorted(shown, key=lambda r: r["index"])]
    assert iterations == sorted(iterations) and set(iterations) == {0, 1, 2}
    # The tuner ran once before each iteration, in the sweep's own folder.
    sweeps = list((tmp_path / "home" / "sweeps").iterdir())
    assert len(sweeps) == 1
    assert sorted(p.name for p in (sweeps[0] / "tuner").iterdir() if p.is_dir()) == [
        "iteration-0",
        "iteration-1",
        "iteration-2",
    ]


def test_a_failing_tuner_fails_the_sweep_with_its_reason(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = str(tmp_path / "home")
    result = cli("run", str(_write(tmp_path, "fail")), "--home", home, "--json")
    assert result.code == 1
    body = json.loads(result.out)
    assert body["state"] == "failed" and "tuner" in body["reason"] and "\n" not in body["reason"]
