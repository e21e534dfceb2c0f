"""Hyperband end to end: real runs, Polyaxon's schedule, concurrency held in every iteration
(measured from the children's own stamps), promotions by the reported metric."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.integration.test_search_resume import COMPONENT, SPEC


def test_hyperband_runs_the_schedule_with_concurrency_held_throughout(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps = tmp_path / "stamps.txt"
    monkeypatch.setenv("QUADRATIC_STAMPS", str(stamps))
    spec = tmp_path / "hb.yaml"
    spec.write_text(
        SPEC.format(python=sys.executable, component=COMPONENT, events=tmp_path / "none").replace(
            "concurrency: 3", "concurrency: 2"
        )
    )
    result = cli("run", str(spec), "--home", str(tmp_path / "home"), "--json")
    assert result.code == 0, result.err
    shown = cli("show", "last", "--home", str(tmp_path / "home"), "--json")
    runs = json.loads(shown.out)["runs"]
    assert {r["state"] for r in runs} == {"succeeded"}

    # Polyaxon's schedule for maxIterations 9, eta 3 (bracket, rung) → runs at that resource.
    sizes = Counter(
        (r["place"]["bracket"], r["place"]["rung"], r["params"]["epochs"]) for r in runs
    )
    assert sizes == {
        (2, 0, 1): 9,
        (2, 1, 3): 3,
        (2, 2, 9): 1,
        (1, 0, 3): 5,
        (1, 1, 9): 1,
        (0, 0, 9): 3,
    }

    # A promoted configuration is one of the best of its rung (loss falls with x near 0.3).
    def at(r: dict[str, Any], bracket: int, rung: int) -> bool:
        return bool(r["place"]["bracket"] == bracket and r["place"]["rung"] == rung)

    first = sorted((r for r in runs if at(r, 2, 0)), key=lambda r: float(r["metrics"]["loss"]))
    promoted = {r["params"]["x"] for r in runs if at(r, 2, 1)}
    assert promoted == {r["params"]["x"] for r in first[:3]}

    # Never more than 2 runs alive at once, across every iteration.
    spans = [tuple(map(float, line.split()[:2])) for line in stamps.read_text().splitlines()]
    assert len(spans) == len(runs) == 22
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    alive = peak = 0
    for _, step in edges:
        alive += step
        peak = max(peak, alive)
    assert peak <= 2


def test_early_stopping_ends_a_hyperband_search_when_its_target_is_reached(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """A metric target works with an adaptive search as with a grid: the first run to reach it
    stops the sweep (succeeded), and the search suggests nothing more."""
    spec = tmp_path / "hb.yaml"
    spec.write_text(
        SPEC.format(python=sys.executable, component=COMPONENT, events=tmp_path / "none").replace(
            "  seed: 11\n",
            "  seed: 11\n  earlyStopping:\n    - {kind: metric_early_stopping, metric: loss, "
            "value: 0.2, optimization: minimize}\n",
        )
    )
    result = cli("run", str(spec), "--home", str(tmp_path / "home"), "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["state"] == "succeeded"
    assert "loss" in (summary["reason"] or "")
    runs = summary["runs"]
    # Only a run at the full resource (9 epochs) can get under 0.2: the search got that far,
    # then stopped before its 22 runs (a run stopped before its first report has no loss).
    reached = [r for r in runs if r["metrics"].get("loss", 1.0) <= 0.2]
    assert reached and all(r["params"]["epochs"] == 9 for r in reached)
    assert len(runs) < 22
