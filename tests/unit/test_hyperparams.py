import datetime as dt
import math
import random
from typing import Any

import msgspec
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import (
    Discrete,
    Distribution,
    arange,
    build_dimension,
    geomspace,
    linspace,
    logspace,
)


def dim(kind: str, value: Any) -> Discrete | Distribution:
    param = msgspec.convert({"kind": kind, "value": value}, m.HpParam)
    return build_dimension(param, "matrix.params.x")


def values(kind: str, value: Any) -> list[Any]:
    d = dim(kind, value)
    assert isinstance(d, Discrete)
    return list(d.values)


# Reference values produced by numpy 2.4 on the same inputs.
def test_linspace_matches_numpy() -> None:
    assert linspace(0.001, 0.1, 5) == [
        0.001,
        0.025750000000000002,
        0.0505,
        0.07525000000000001,
        0.1,
    ]
    assert linspace(0, 1, 1) == [0.0]
    assert linspace(1, 2, 2) == [1.0, 2.0]


def test_arange_matches_numpy() -> None:
    assert arange(1.0, 10.0, 2) == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert arange(0.0, 1.0, 0.1) == [
        0.0,
        0.1,
        0.2,
        0.30000000000000004,
        0.4,
        0.5,
        0.6000000000000001,
        0.7000000000000001,
        0.8,
        0.9,
    ]
    assert arange(1, 10, 3) == [1, 4, 7]


def test_logspace_and_geomspace_are_close_to_numpy() -> None:
    assert logspace(1, 3, 3) == [10.0, 100.0, 1000.0]
    assert logspace(1, 3, 3, base=2) == [2.0, 4.0, 8.0]
    for ours, numpy in zip(geomspace(1, 1000, 4), [1.0, 10.0, 100.0, 1000.0], strict=True):
        assert math.isclose(ours, numpy, rel_tol=1e-15)
    assert geomspace(-1, -100, 3)[0] == -1.0


@pytest.mark.parametrize("form", ["1:10:2", [1, 10, 2], {"start": 1, "stop": 10, "step": 2}])
def test_range_in_every_form(form: Any) -> None:
    assert values("range", form) == [1.0, 3.0, 5.0, 7.0, 9.0]


@pytest.mark.parametrize(
    "form", ["0.001:0.1:5", [0.001, 0.1, 5], {"start": 0.001, "stop": 0.1, "num": 5}]
)
def test_linspace_in_every_form(form: Any) -> None:
    assert values("linspace", form) == linspace(0.001, 0.1, 5)


@pytest.mark.parametrize(
    "form", ["1:3:3:2", [1, 3, 3, 2], {"start": 1, "stop": 3, "num": 3, "base": 2}]
)
def test_logspace_with_base_in_every_form(form: Any) -> None:
    assert values("logspace", form) == [2.0, 4.0, 8.0]


def test_geomspace_forms() -> None:
    assert values("geomspace", "1:100:3") == values("geomspace", [1, 100, 3])


def test_daterange_and_datetimerange() -> None:
    assert values("daterange", ["2019-06-22", "2019-06-25", 1]) == [
        dt.date(2019, 6, 22),
        dt.date(2019, 6, 23),
        dt.date(2019, 6, 24),
    ]
    assert values("daterange", {"start": "2019-06-22", "stop": "2019-06-26", "step": 2}) == [
        dt.date(2019, 6, 22),
        dt.date(2019, 6, 24),
    ]
    assert values("datetimerange", ["2019-06-22 21:00", "2019-06-22 23:00", 3600]) == [
        dt.datetime(2019, 6, 22, 21),
        dt.datetime(2019, 6, 22, 22),
    ]


def test_choice_keeps_any_values() -> None:
    assert values("choice", [1, "a", [2], {"k": 1}]) == [1, "a", [2], {"k": 1}]


def test_pchoice_weights_give_the_remainder_to_the_last_outcome() -> None:
    d = dim("pchoice", [["relu", 0.1], ["sigmoid", 0.8]])
    assert isinstance(d, Discrete)
    assert d.weights is not None
    assert d.weights[0] == 0.1
    assert math.isclose(d.weights[1], 0.9)
    rng = random.Random(0)
    draws = [d.sample(rng) for _ in range(2000)]
    assert 100 < draws.count("relu") < 320


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("range", "10:1:1", "stop must be greater than start"),
        ("range", "1:10:0", "step must be > 0"),
        ("range", "1:10", "missing step"),
        ("range", "a:b:c", "start: expected a number"),
        ("linspace", [1, 2, 0], "num must be > 0"),
        ("linspace", {"start": 1, "stop": 2, "count": 3}, "unknown key 'count'"),
        ("choice", "abc", "non-empty list"),
        ("choice", [], "non-empty list"),
        ("pchoice", [["a", 1]], "float probability"),
        ("pchoice", [["a", 0.6], ["b", 0.6]], "sum to at most 1"),
        ("daterange", "2019-06-22:2019-06-25:1", "a list or a mapping"),
        ("uniform", "1", "separated by ':'"),
        ("quniform", [0, 1, 0], "q must be > 0"),
    ],
)
def test_bad_values_name_the_field(kind: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        dim(kind, value)
    assert info.value.field == "matrix.params.x.value"
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kind",
    ["uniform", "loguniform", "normal", "lognormal"],
)
def test_distributions_sample_reproducibly(kind: str) -> None:
    d = dim(kind, [0, 1])
    assert isinstance(d, Distribution)

    def draws(seed: int) -> list[Any]:
        rng = random.Random(seed)
        return [d.sample(rng) for _ in range(3)]

    first = draws(3)
    assert first == draws(3)
    assert len(set(first)) == 3, "a continuous distribution does not repeat itself"
    assert set(draws(4)).isdisjoint(first), "another seed gives other samples"


def test_uniform_stays_in_bounds_and_loguniform_is_exp_of_it() -> None:
    u = dim("uniform", "2:3")
    lu = dim("loguniform", "2:3")
    rng = random.Random(1)
    assert all(2 <= u.sample(rng) < 3 for _ in range(500))
    assert all(math.exp(2) <= lu.sample(rng) < math.exp(3) for _ in range(500))


def test_q_variants_floor_to_multiples_of_q() -> None:
    d = dim("quniform", [0, 10, 2])
    rng = random.Random(0)
    assert {d.sample(rng) for _ in range(200)} <= {0.0, 2.0, 4.0, 6.0, 8.0}
    for kind in ("qloguniform", "qnormal", "qlognormal"):
        q = dim(
            kind,
            {"q": 0.5, **({"low": 0, "high": 1} if "uniform" in kind else {"loc": 0, "scale": 1})},
        )
        sample = q.sample(rng)
        assert math.isclose(sample / 0.5, round(sample / 0.5))
