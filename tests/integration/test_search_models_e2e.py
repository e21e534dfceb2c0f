"""Model-based search against random search, as real runs: on a smooth objective, with fixed
seeds and the same number of runs, bayes and tpe find better configurations."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

pytest.importorskip("sklearn")
pytest.importorskip("optuna")

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: {kind}
  concurrency: 1
  seed: {seed}
  {settings}
  params:
    x: {{kind: uniform, value: [0, 1]}}
    y: {{kind: uniform, value: [0, 1]}}
component:
  inputs: [{{name: x, type: float}}, {{name: y, type: float}}]
  run:
    kind: job
    container:
      command: ["{python}", "-c", "{script}"]
"""
SCRIPT = (
    "from orchestrator.tracking import log_metrics; "
    "log_metrics(loss=({{ x }} - 0.3) ** 2 + ({{ y }} - 0.7) ** 2)"
)
RUNS = 16
SETTINGS = {
    "random": f"numRuns: {RUNS}",
    "bayes": (
        "numInitialRuns: 6\n  maxIterations: 10\n  metric: {name: loss, optimization: minimize}"
        "\n  utilityFunction: {acquisitionFunction: ucb, kappa: 1.0, numWarmup: 500,"
        " numIterations: 2}"
    ),
    "tpe": "numRuns: 4\n  maxIterations: 3\n  metric: {name: loss, optimization: minimize}",
}
SEEDS = (1, 2, 3)


def best(cli: Callable[..., CliResult], tmp_path: Path, kind: str, seed: int) -> float:
    spec = tmp_path / f"{kind}-{seed}.yaml"
    spec.write_text(
        SPEC.format(
            kind=kind, seed=seed, settings=SETTINGS[kind], python=sys.executable, script=SCRIPT
        )
    )
    home = str(tmp_path / f"home-{kind}-{seed}")
    result = cli("run", str(spec), "--home", home, "--json")
    assert result.code == 0, result.err
    runs = json.loads(result.out)["runs"]
    assert len(runs) == RUNS
    return min(float(r["metrics"]["loss"]) for r in runs)


@pytest.mark.timeout(240)
def test_bayes_and_tpe_beat_random_search_with_the_same_runs(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    totals = {kind: sum(best(cli, tmp_path, kind, s) for s in SEEDS) for kind in SETTINGS}
    assert totals["bayes"] < totals["random"], totals
    assert totals["tpe"] < totals["random"], totals
