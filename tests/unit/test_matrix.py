import itertools
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.spec.matrix import expand_matrix


def matrix(data: dict[str, Any]) -> m.Matrix:
    return decode(data, m.Matrix)  # type: ignore[no-any-return]


def choice(*values: Any) -> dict[str, Any]:
    return {"kind": "choice", "value": list(values)}


def test_grid_is_the_product_with_the_last_key_fastest() -> None:
    grid = matrix({"kind": "grid", "params": {"a": choice(1, 2), "b": choice("x", "y", "z")}})
    runs = list(expand_matrix(grid))
    assert runs == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]


def test_grid_num_runs_truncates() -> None:
    grid = matrix(
        {"kind": "grid", "numRuns": 4, "params": {"a": choice(1, 2, 3), "b": choice(1, 2, 3)}}
    )
    expansion = expand_matrix(grid)
    assert len(expansion) == 4
    assert [r["b"] for r in expansion] == [1, 2, 3, 1]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
    st.none() | st.integers(min_value=1, max_value=300),
)
def test_grid_size_and_order_property(sizes: list[int], num_runs: int | None) -> None:
    params = {f"k{i}": choice(*range(n)) for i, n in enumerate(sizes)}
    data: dict[str, Any] = {"kind": "grid", "params": params}
    if num_runs is not None:
        data["numRuns"] = num_runs
    expansion = expand_matrix(matrix(data))
    expected = [
        dict(zip(params, p, strict=True)) for p in itertools.product(*[range(n) for n in sizes])
    ]
    if num_runs is not None:
        expected = expected[:num_runs]
    runs = list(expansion)
    assert runs == expected
    assert len(expansion) == len(expected)
    assert [expansion.point(i) for i in range(len(expected))] == expected


def test_distributions_cannot_be_used_with_grid() -> None:
    grid = matrix({"kind": "grid", "params": {"a": {"kind": "uniform", "value": [0, 1]}}})
    with pytest.raises(SpecError, match="cannot be used with grid search"):
        expand_matrix(grid)


def test_million_point_grid_is_lazy() -> None:
    params = {k: {"kind": "range", "value": [0, 100, 1]} for k in "abc"}
    tracemalloc.start()
    started = time.perf_counter()
    expansion = expand_matrix(matrix({"kind": "grid", "params": params}))
    first = list(itertools.islice(expansion, 100))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(expansion) == 1_000_000
    assert first[0] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert first[99] == {"a": 0.0, "b": 0.0, "c": 99.0}
    assert expansion.point(999_999) == {"a": 99.0, "b": 99.0, "c": 99.0}
    assert elapsed < 0.5
    assert peak < 2_000_000


def test_random_is_reproducible_with_seed_and_unique() -> None:
    uniform = {"kind": "uniform", "value": "0:1"}
    data = {
        "kind": "random",
        "numRuns": 20,
        "seed": 7,
        "params": {"a": choice(*range(10)), "b": uniform},
    }
    first = list(expand_matrix(matrix(data)))
    assert first == list(expand_matrix(matrix(data)))
    assert len(first) == 20
    assert len({(r["a"], r["b"]) for r in first}) == 20


def test_random_is_capped_at_the_discrete_space_without_duplicates() -> None:
    data = {
        "kind": "random",
        "numRuns": 50,
        "seed": 1,
        "params": {"a": choice(1, 2, 3), "b": choice("x", "y")},
    }
    expansion = expand_matrix(matrix(data))
    runs = list(expansion)
    assert len(expansion) == 6
    assert sorted((r["a"], r["b"]) for r in runs) == sorted(
        itertools.product([1, 2, 3], ["x", "y"])
    )


def test_random_without_seed_draws_and_records_one() -> None:
    data = {"kind": "random", "numRuns": 3, "params": {"a": {"kind": "normal", "value": [0, 1]}}}
    expansion = expand_matrix(matrix(data))
    draws = list(expansion)
    assert expansion.seed is not None
    assert len(draws) == 3
    assert list(expand_matrix(matrix({**data, "seed": expansion.seed}))) == draws
    assert list(expand_matrix(matrix({**data, "seed": expansion.seed + 1}))) != draws


def test_mapping_keeps_entries_in_order_and_collects_keys() -> None:
    mapping = matrix({"kind": "mapping", "values": [{"a": 1}, {"a": 2, "b": 3}]})
    expansion = expand_matrix(mapping)
    assert list(expansion) == [{"a": 1}, {"a": 2, "b": 3}]
    assert expansion.keys == ["a", "b"]


@pytest.mark.parametrize("kind", ["hyperband", "bayes", "hyperopt", "tpe", "iterative"])
def test_adaptive_kinds_expand_to_an_example_and_a_seed(kind: str) -> None:
    """An adaptive kind has no runs to walk: one example configuration (rendered up front so
    template errors surface early) and the seed its searcher draws with."""
    metric = {"name": "loss", "optimization": "minimize"}
    data: dict[str, dict[str, Any]] = {
        "hyperband": {
            "maxIterations": 10,
            "eta": 3,
            "resource": {"name": "epochs", "type": "int"},
            "metric": metric,
            "params": {"lr": choice(0.1)},
        },
        "bayes": {
            "numInitialRuns": 2,
            "maxIterations": 2,
            "metric": metric,
            "params": {"lr": choice(0.1)},
        },
        "hyperopt": {"metric": metric, "params": {"lr": choice(0.1)}},
        "tpe": {"metric": metric, "numRuns": 4, "params": {"lr": choice(0.1)}},
        "iterative": {"maxIterations": 2, "params": {"lr": choice(0.1)}},
    }
    expansion = expand_matrix(matrix({"kind": kind, **data[kind], "seed": 7}))
    assert expansion.adaptive and expansion.seed == 7
    example = {"lr": 0.1, "epochs": 10} if kind == "hyperband" else {"lr": 0.1}
    assert list(expansion) == [example]


def test_tpe_needs_num_runs() -> None:
    metric = {"name": "loss"}
    with pytest.raises(SpecError) as info:
        expand_matrix(matrix({"kind": "tpe", "metric": metric, "params": {"lr": choice(0.1)}}))
    assert info.value.field == "matrix.numRuns"


def test_hyperband_missing_fields_are_reported() -> None:
    with pytest.raises(SpecError) as info:
        expand_matrix(matrix({"kind": "hyperband", "eta": 3}))
    assert info.value.field == "matrix.maxIterations"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"concurrency": 0}, "matrix.concurrency"),
        (
            {"earlyStopping": [{"kind": "failure_early_stopping", "percent": 150}]},
            "matrix.earlyStopping[0].percent",
        ),
        (
            {
                "earlyStopping": [
                    {
                        "kind": "metric_early_stopping",
                        "metric": "loss",
                        "value": 1,
                        "optimization": "minimize",
                        "policy": {"kind": "diff", "percent": 0, "evaluationInterval": 1},
                    }
                ]
            },
            "matrix.earlyStopping[0].policy.percent",
        ),
    ],
)
def test_concurrency_and_percentages_are_checked(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        expand_matrix(matrix({"kind": "mapping", "values": [{"a": 1}], **extra}))
    assert info.value.field == field


def test_small_failure_percent_is_fine() -> None:
    rules = [{"kind": "failure_early_stopping", "percent": 0.3}]
    mapping = matrix({"kind": "mapping", "values": [{"a": 1}], "earlyStopping": rules})
    assert mapping.early_stopping == [m.FailureEarlyStopping(percent=0.3)]
    expansion = expand_matrix(mapping)
    assert len(expansion) == 1
    assert list(expansion) == [{"a": 1}]
