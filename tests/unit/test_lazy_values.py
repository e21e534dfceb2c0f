"""Range-like dimensions are computed from their index: same values, order and errors as the
lists they replace, in constant memory."""

import itertools
import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.spec.hyperparams import Discrete, arange, geomspace, linspace, logspace
from orchestrator.spec.matrix import _product, expand_matrix


# The eager implementations these replace (numpy's arithmetic), kept as the reference.
def eager_arange(start: float, stop: float, step: float) -> list[Any]:
    length = math.ceil((stop - start) / step)
    if length <= 0:
        return []
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(length)]
    first, second = start, start + step
    delta = second - first
    values = [first, second][:length]
    values.extend(first + i * delta for i in range(2, length))
    return values


def eager_linspace(start: float, stop: float, num: int) -> list[float]:
    start, stop = float(start), float(stop)
    div, delta = num - 1, stop - start
    if div > 0:
        step = delta / div
        values = [(i / div) * delta + start if step == 0 else i * step + start for i in range(num)]
    else:
        values = [i * delta + start for i in range(num)]
    if num > 1:
        values[-1] = stop
    return values


def eager_geomspace(start: float, stop: float, num: int) -> list[float]:
    sign = -1.0 if start < 0 else 1.0
    start, stop = abs(float(start)), abs(float(stop))
    values = [math.pow(10.0, y) for y in eager_linspace(math.log10(start), math.log10(stop), num)]
    if num > 0:
        values[0] = start
    if num > 1:
        values[-1] = stop
    return [sign * v for v in values]


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal value by value, bit for bit (``-0.0`` is not ``0.0``; types count)."""
    return [(type(x), repr(x)) for x in a] == [(type(x), repr(x)) for x in b]


numbers = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000)


@settings(max_examples=300, deadline=None)
@given(numbers, numbers, numbers.filter(lambda s: abs(s) > 1e-3))
def test_arange_matches_the_eager_list(start: float, stop: float, step: float) -> None:
    if math.ceil((stop - start) / step) > 20_000:
        return
    lazy = arange(start, stop, step)
    eager = eager_arange(start, stop, step)
    assert len(lazy) == len(eager)
    assert same(list(lazy), eager)
    assert same([lazy[i] for i in range(len(lazy))], eager)


@settings(max_examples=300, deadline=None)
@given(numbers, numbers, st.integers(0, 500))
def test_linspace_logspace_geomspace_match_the_eager_lists(
    start: float, stop: float, num: int
) -> None:
    assert same(list(linspace(start, stop, num)), eager_linspace(start, stop, num))
    small = (start / 1e5, stop / 1e5)  # exponents pow can take
    assert same(
        list(logspace(*small, num)), [math.pow(10.0, y) for y in eager_linspace(*small, num)]
    )
    if start and stop and (start < 0) == (stop < 0):
        assert same(list(geomspace(start, stop, num)), eager_geomspace(start, stop, num))


def test_negative_zero_start_is_kept() -> None:
    assert same(list(arange(-0.0, 1.0, 0.5)), [-0.0, 0.5])


def test_values_index_slice_and_compare_like_a_list() -> None:
    values = arange(0, 10, 2)
    assert values == [0, 2, 4, 6, 8]
    assert [0, 2, 4, 6, 8] == values  # noqa: SIM300 - the list asks the sequence
    assert values != [0, 2, 4] and values != "02468"
    assert values[-1] == 8 and values[1:4] == [2, 4, 6] and values[::-2] == [8, 4, 0]
    with pytest.raises(IndexError):
        values[5]
    with pytest.raises(IndexError):
        values[-6]
    assert len(arange(5, 1, 1)) == 0 and list(arange(5, 1, 1)) == []
    assert "length=5" in repr(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=4))
def test_product_matches_itertools(sizes: list[int]) -> None:
    columns = [list(range(10 * k, 10 * k + n)) for k, n in enumerate(sizes)]
    assert list(_product(columns)) == list(itertools.product(*columns))


def grid(params: dict[str, Any]) -> m.Grid:
    matrix = decode({"kind": "grid", "params": params}, m.Matrix)
    assert isinstance(matrix, m.Grid)
    return matrix


def test_a_million_value_range_holds_no_list() -> None:
    matrix = grid(
        {
            "a": {"kind": "range", "value": "0:1000000:1"},
            "b": {"kind": "daterange", "value": ["2020-01-01", "2030-01-01", 1]},
            "c": {"kind": "linspace", "value": "0:1:1000000"},
        }
    )
    tracemalloc.start()
    try:
        expansion = expand_matrix(matrix)
        points = list(itertools.islice(iter(expansion), 3))
        last = expansion.point(len(expansion) - 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a list of 10^6 floats alone is over 30 MB
    dim = expansion.dimensions["a"]
    assert isinstance(dim, Discrete) and len(dim) == 1_000_000
    assert points[1] == {"a": 0.0, "b": points[0]["b"], "c": 1 / 999_999}
    assert last["a"] == 999_999.0 and last["c"] == 1.0


def test_errors_are_unchanged() -> None:
    with pytest.raises(SpecError, match="generates 20,000,000 values, more than 10,000,000"):
        expand_matrix(grid({"a": {"kind": "range", "value": "0:20000000:1"}}))
    with pytest.raises(SpecError, match="geometric sequence cannot include zero"):
        expand_matrix(grid({"a": {"kind": "geomspace", "value": [0, 1, 3]}}))
