"""Model-based search against random search, as real runs: on a smooth objective, with fixed
seeds and the same number of runs, bayes and tpe find better configurations."""

from __future__ import annotations

import json
import sqlite3
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


JITTER = (
    "import os, time; time.sleep(os.urandom(1)[0] / 255 * 0.05); "
    "from orchestrator.tracking import log_metrics; "
    "log_metrics(loss=({{ x }} - 0.3) ** 2 + ({{ y }} - 0.7) ** 2)"
)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["tpe", "bayes"])
def test_a_seeded_model_search_is_reproducible_at_any_concurrency(
    kind: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Runs end in a random order (each sleeps 0-50 ms at random), four at a time; with a
    seed, results reach the model in run order, so two sweeps make the same suggestions."""
    spec = tmp_path / f"{kind}.yaml"
    text = SPEC.format(
        kind=kind, seed=7, settings=SETTINGS[kind], python=sys.executable, script=JITTER
    )
    spec.write_text(text.replace("concurrency: 1", "concurrency: 4"))
    suggested = []
    for attempt in range(2):
        home = tmp_path / f"home-{attempt}"
        result = cli("run", str(spec), "--home", str(home), "--json")
        assert result.code == 0, result.err
        with sqlite3.connect(home / "journal.sqlite") as db:
            rows = db.execute("SELECT idx, params FROM suggestions ORDER BY idx").fetchall()
        suggested.append([(idx, json.loads(params)) for idx, params in rows])
    assert len(suggested[0]) == RUNS
    assert suggested[0] == suggested[1]
