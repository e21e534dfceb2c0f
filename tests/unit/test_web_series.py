"""The web page's reads on a real journal: series thinned (first and last kept, at most k
points, evenly spaced), ordinal steps, the names of a sweep, the value each run is judged by."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.history import Objective
from orchestrator.store.journal import Journal
from orchestrator.store.series import SeriesReader, kept, open_reader, thinned
from orchestrator.sweep_board import best_of


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 10, 11, 99, 100, 101, 1000, 4097])
@pytest.mark.parametrize("k", [2, 3, 7, 10, 100, 1000])
def test_kept_keeps_the_first_and_last_and_at_most_k_evenly(count: int, k: int) -> None:
    chosen = kept(count, k)
    assert chosen == sorted(set(chosen))
    if count <= k:
        assert chosen == list(range(count))
        return
    assert len(chosen) == k and chosen[0] == 0 and chosen[-1] == count - 1
    gaps = {b - a for a, b in itertools.pairwise(chosen)}
    assert max(gaps) - min(gaps) <= 1, "evenly spaced: gaps differ by one at most"


def test_thinned_returns_the_points_it_keeps() -> None:
    points = [(step, float(step)) for step in range(10)]
    assert thinned(points, 4) == [(0, 0.0), (3, 3.0), (6, 6.0), (9, 9.0)]
    assert thinned(points, 10) is points


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    j.add_sweep(
        "s1",
        name=None,
        description=None,
        tags=[],
        spec_path="spec.yaml",
        kind="mapping",
        total=3,
        concurrency=1,
        pid=1,
        seed=None,
    )
    for index in range(3):
        j.add_run(f"r{index}", "s1", index, "c", "{}", "[]", "/x", f"p{index}")
        for step in range(50):
            j.add_metrics(f"r{index}", step * 10, {"loss": index + 1 / (step + 1)})
        j.add_metrics(f"r{index}", None, {"tick": 1.0})
        j.add_metrics(f"r{index}", None, {"tick": 2.0})
    for ordinal in range(20):
        j.add_metrics("r0", None, {"ord": float(ordinal)})
    j.set_output("r1", "loss", 0.5)  # an output of the objective's name wins over the metric
    j.set_output("r2", "loss", "n/a")  # not a number: no value for this run
    j.flush_sync()
    yield j
    j.close()


@pytest.fixture
def reader(journal: Journal) -> Iterator[SeriesReader]:
    r = SeriesReader(open_reader(journal.path), journal.path)
    yield r
    r.conn.close()


def test_sweep_series_are_thinned_per_run_and_name(reader: SeriesReader) -> None:
    series = reader.sweep_series("s1", ["loss"], 7)
    assert list(series) == ["loss"] and sorted(series["loss"]) == [0, 1, 2]
    for index, points in series["loss"].items():
        expected = [(step * 10, index + 1 / (step + 1)) for step in kept(50, 7)]
        assert points == expected
        assert points[0] == (0, index + 1.0) and points[-1] == (490, index + 1 / 50)


def test_reports_without_a_step_get_their_ordinal(reader: SeriesReader) -> None:
    assert reader.sweep_series("s1", None, 1000)["tick"][2] == [(0, 1.0), (1, 2.0)]
    assert reader.run_series("r0", 0, ["tick"], 1000) == {"tick": {0: [(0, 1.0), (1, 2.0)]}}
    assert reader.sweep_series("s1", ["nothing"], 10) == {}
    thin = reader.run_series("r0", 0, ["ord"], 5)
    assert thin == {"ord": {0: [(i, float(i)) for i in kept(20, 5)]}}, "ordinals of the kept"


def test_names_and_objective_values(reader: SeriesReader) -> None:
    assert reader.metric_names("s1") == ["loss", "ord", "tick"]
    assert reader.metric_names("none") == []
    values = reader.objective_values("s1", "loss")
    assert values == [(0, "r0", 0 + 1 / 50), (1, "r1", 0.5)]
    assert best_of(values, Objective("loss", "minimize")) == {
        "index": 0,
        "run": "r0",
        "value": 0.02,
    }
    assert best_of(values, Objective("loss", "maximize"))["index"] == 1  # type: ignore[index]
    assert best_of([], Objective("loss", "minimize")) is None
