"""The early-stopping policies against hand-computed cases (docs/early-stopping.md)."""

from __future__ import annotations

from orchestrator_plugins.early_stopping import (  # type: ignore[import-not-found]
    diff_decision,
    due,
    median_decision,
    truncation_decision,
)


def test_evaluation_steps() -> None:
    assert [s for s in range(1, 10) if due(s, None, None)] == list(range(1, 10))
    assert [s for s in range(1, 10) if due(s, 3, 2)] == [3, 5, 7, 9]
    assert [s for s in range(1, 10) if due(s, 1, 4)] == [1, 5, 9]


def test_median() -> None:
    # minimize: median of [0.5, 0.7, 0.9] is 0.7
    assert median_decision(0.8, [0.5, 0.7, 0.9], maximize=False, min_samples=1) is not None
    assert median_decision(0.7, [0.5, 0.7, 0.9], maximize=False, min_samples=1) is None
    assert median_decision(0.6, [0.5, 0.7, 0.9], maximize=False, min_samples=1) is None
    # an even count averages the middle two: median of [0.5, 0.7] is 0.6
    assert median_decision(0.61, [0.5, 0.7], maximize=False, min_samples=1) is not None
    # maximize: accuracy 0.80 vs median 0.85
    assert median_decision(0.80, [0.8, 0.85, 0.9], maximize=True, min_samples=1) is not None
    # not enough samples yet
    assert median_decision(9.0, [0.5, 0.7], maximize=False, min_samples=3) is None


def test_truncation() -> None:
    # n = 4 runs (3 others + this one), 50% -> the worst 2 go.
    refs = [0.1, 0.2, 0.3]
    assert truncation_decision(0.4, refs, 50, maximize=False, min_samples=1) is not None  # 4th
    assert truncation_decision(0.25, refs, 50, maximize=False, min_samples=1) is not None  # 3rd
    assert truncation_decision(0.15, refs, 50, maximize=False, min_samples=1) is None  # 2nd
    # 30% of 4 is 1.2 -> only the worst one goes
    assert truncation_decision(0.25, refs, 30, maximize=False, min_samples=1) is None
    assert truncation_decision(0.35, refs, 30, maximize=False, min_samples=1) is not None
    # ties are not "worse": equal to the worst other run is rank 3 of 4
    assert truncation_decision(0.3, refs, 30, maximize=False, min_samples=1) is None
    # 20% of 2 runs truncates nobody
    assert truncation_decision(9.0, [0.1], 20, maximize=False, min_samples=1) is None
    assert truncation_decision(0.1, [0.5, 0.6, 0.7], 25, maximize=True, min_samples=1)


def test_diff() -> None:
    # minimize, best 0.5, 10% -> anything above 0.55 goes
    assert diff_decision(0.56, [0.5, 0.8], 10, maximize=False, min_samples=1) is not None
    assert diff_decision(0.55, [0.5, 0.8], 10, maximize=False, min_samples=1) is None
    # maximize, best 0.9, 5% -> anything below 0.855 goes
    assert diff_decision(0.85, [0.9, 0.7], 5, maximize=True, min_samples=1) is not None
    assert diff_decision(0.86, [0.9, 0.7], 5, maximize=True, min_samples=1) is None
    # negative values use |best|: best -2.0, 50% -> above -1.0 goes (minimize)
    assert diff_decision(-0.9, [-2.0], 50, maximize=False, min_samples=1) is not None
    assert diff_decision(-1.1, [-2.0], 50, maximize=False, min_samples=1) is None
    assert diff_decision(5.0, [1.0], 10, maximize=False, min_samples=2) is None
