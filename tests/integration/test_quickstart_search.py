"""Polyaxon's own quick-start optimisation files (hyperband, bayes, hyperopt), adapted only to
read the local ``typed.yaml``, run offline to completion as real processes, each as Polyaxon
sizes it, and the search ends on a best run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SHARED = ROOT.parent / "shared" / "quickstart" / "optimization"

#: file → (Polyaxon's original, runs the search makes).
CASES = {
    "hyperband.yaml": ("hyperparams_hyperband.yaml", 22),
    "bayes.yaml": ("hyperparams_bo.yaml", 50),
    # numRuns 20 for 11 iterations, capped at the 60 configurations of its discrete space.
    "hyperopt.yaml": ("hyperparams_hyperopot.yaml", 60),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_quickstart_search_runs_to_completion(name: str, tmp_path: Path) -> None:
    original, runs = CASES[name]
    if SHARED.is_dir():  # the only change from Polyaxon's file is where typed.yaml comes from
        ours = (QUICKSTART / name).read_text().splitlines()[1:]
        theirs = (SHARED / original).read_text().splitlines()
        assert [line for line in ours if "typed.yaml" not in line] == [
            line for line in theirs if "typed.yaml" not in line
        ]
    home = str(tmp_path / "home")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(QUICKSTART / name),
            "--home",
            home,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["state"] == "succeeded"
    assert len(summary["runs"]) == runs
    assert {r["state"] for r in summary["runs"]} == {"succeeded"}
    assert all("loss" in r["metrics"] for r in summary["runs"])
