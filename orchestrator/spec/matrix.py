"""Lazy matrix expansion: a grid of 10^6 points is never materialised.

Each expansion yields *suggestions* (``{matrix key: raw value}``) in Polyaxon's order:
``mapping`` in list order; ``grid`` as ``itertools.product`` in key order (the last key varies
fastest) truncated to ``numRuns``; ``random`` sampled with ``seed`` without duplicates, capped
at the size of the space when every dimension is discrete. Dimensions are lists (choice) or
values computed from their index (range, linspace...), so memory stays bounded by the largest
choice list, never by a range or the product.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.decode import to_camel
from orchestrator.spec.hyperparams import Dimension, Discrete, Distribution, build_dimension

__all__ = [
    "ADAPTIVE_KINDS",
    "Expansion",
    "discrete_size",
    "expand_matrix",
    "freeze",
    "matrix_kind",
]

#: Matrix kinds whose runs depend on earlier runs' results (a searcher suggests them one by
#: one; see :mod:`orchestrator.search`): they have no expansion to walk.
ADAPTIVE_KINDS = frozenset({"hyperband", "bayes", "hyperopt", "tpe", "iterative"})


def matrix_kind(matrix: m.Matrix) -> str:
    kind = matrix.__struct_config__.tag
    assert isinstance(kind, str)
    return kind


def freeze(value: Any) -> Any:
    """A hashable stand-in for a suggestion value, for duplicate detection."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return (type(value).__name__, value)


@dataclass
class Expansion:
    """The runs a matrix asks for, generated on demand."""

    kind: str
    #: Every key a suggestion may carry, in matrix order.
    keys: list[str]
    #: Number of suggestions, known before expanding.
    size: int
    dimensions: dict[str, Dimension] = field(default_factory=dict)
    values: list[dict[str, Any]] | None = None
    num_runs: int | None = None
    #: The seed random search used (drawn when the file gives none, so it can be recorded).
    seed: int | None = None
    #: An adaptive kind's example configuration (rendered once up front, so a template
    #: error surfaces before anything runs); its runs come from a searcher.
    example: dict[str, Any] | None = None

    @property
    def adaptive(self) -> bool:
        return self.kind in ADAPTIVE_KINDS

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.example is not None:
            return iter([self.example])
        if self.values is not None:
            return iter(self.values)
        if self.kind == "grid":
            return self._grid()
        return self._random()

    def __len__(self) -> int:
        return self.size

    def _grid(self) -> Iterator[dict[str, Any]]:
        keys = list(self.dimensions)
        columns = [d.values for d in self.dimensions.values() if isinstance(d, Discrete)]
        points = _product(columns)
        for point in itertools.islice(points, self.size):
            yield dict(zip(keys, point, strict=True))

    def point(self, index: int) -> dict[str, Any]:
        """The grid point at ``index`` without walking the ones before it."""
        if self.values is not None:
            return self.values[index]
        if self.kind != "grid" or not 0 <= index < self.size:
            raise IndexError(index)
        out: dict[str, Any] = {}
        for key in reversed(list(self.dimensions)):
            dim = self.dimensions[key]
            assert isinstance(dim, Discrete)
            index, digit = divmod(index, len(dim.values))
            out[key] = dim.values[digit]
        return dict(reversed(list(out.items())))

    def _random(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        seen: set[Any] = set()
        attempts_left = max(1000, 100 * self.size)
        produced = 0
        while produced < self.size and attempts_left > 0:
            attempts_left -= 1
            suggestion = {k: d.sample(rng) for k, d in self.dimensions.items()}
            frozen = freeze(suggestion)
            if frozen in seen:
                continue
            seen.add(frozen)
            produced += 1
            yield suggestion


def _product(columns: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """``itertools.product(*columns)`` without copying each column into a tuple first (a
    column may be a lazy range of 10^6 values): the last column varies fastest."""
    if not columns:
        yield ()
        return
    if any(len(column) == 0 for column in columns):
        return
    *outer, last = columns
    if not outer:
        for value in last:
            yield (value,)
        return
    digits = [0] * len(outer)
    prefix = [column[0] for column in outer]
    while True:
        head = tuple(prefix)
        for value in last:
            yield (*head, value)
        position = len(outer) - 1
        while position >= 0:
            digits[position] += 1
            if digits[position] < len(outer[position]):
                prefix[position] = outer[position][digits[position]]
                break
            digits[position] = 0
            prefix[position] = outer[position][0]
            position -= 1
        if position < 0:
            return


def _dimensions(params: dict[str, m.HpParam], path: str) -> dict[str, Dimension]:
    return {k: build_dimension(v, f"{path}.params.{k}") for k, v in params.items()}


def discrete_size(dimensions: dict[str, Dimension]) -> int | None:
    if any(isinstance(d, Distribution) for d in dimensions.values()):
        return None
    return math.prod(len(d) for d in dimensions.values() if isinstance(d, Discrete))


def expand_matrix(matrix: m.Matrix, path: str = "matrix", seed: int | None = None) -> Expansion:
    """Validate a matrix and return its lazy expansion (for an adaptive kind: its dimensions,
    seed and one example configuration; a searcher suggests its runs).

    ``seed``: the one a random or adaptive search drew when it first ran (journaled), used when
    the file gives none, so that a resumed sweep draws the same configurations."""
    kind = matrix_kind(matrix)
    _check_common(matrix, path)
    if isinstance(matrix, m.Mapping):
        keys: dict[str, None] = {}
        for entry in matrix.values:
            keys.update(dict.fromkeys(str(k) for k in entry))
        return Expansion(kind, list(keys), len(matrix.values), values=matrix.values)
    if isinstance(matrix, m.Grid):
        dims = _dimensions(matrix.params, path)
        for key, dim in dims.items():
            if isinstance(dim, Distribution) or dim.weights is not None:
                raise SpecError(
                    f"{dim.kind} is a distribution and cannot be used with grid "
                    "search; use random search",
                    field=f"{path}.params.{key}.kind",
                )
        total = discrete_size(dims) or 0
        if matrix.num_runs is not None:
            if matrix.num_runs <= 0:
                raise SpecError(
                    f"expected a positive integer, got {matrix.num_runs}", field=f"{path}.numRuns"
                )
            total = min(total, matrix.num_runs)
        return Expansion(kind, list(dims), total, dims, num_runs=matrix.num_runs)
    if isinstance(matrix, m.Random):
        dims = _dimensions(matrix.params, path)
        if matrix.num_runs <= 0:
            raise SpecError(
                f"expected a positive integer, got {matrix.num_runs}", field=f"{path}.numRuns"
            )
        space = discrete_size(dims)
        size = matrix.num_runs if space is None else min(space, matrix.num_runs)
        seed = _seed(matrix.seed, seed)
        return Expansion(kind, list(dims), size, dims, num_runs=matrix.num_runs, seed=seed)
    return _adaptive(matrix, path, _seed(matrix.seed, seed))


def _seed(given: int | None, drawn: int | None) -> int:
    """The file's seed, else the one drawn when the sweep first ran, else a new one."""
    if given is not None:
        return given
    return drawn if drawn is not None else secrets.randbits(32)


def _adaptive(matrix: m.Matrix, path: str, seed: int) -> Expansion:
    """Check what the algorithm needs; the searcher checks the rest when it is built."""
    kind = matrix_kind(matrix)
    dims = _dimensions(getattr(matrix, "params", None) or {}, path)
    for name in ("num_runs", "max_iterations", "num_initial_runs"):
        value = getattr(matrix, name, None)
        if value is not None and value <= 0:
            raise SpecError(
                f"expected a positive integer, got {value}", field=f"{path}.{to_camel(name)}"
            )
    example = {key: dim.sample(random.Random(seed)) for key, dim in dims.items()}
    keys = list(dims)
    if isinstance(matrix, m.Hyperband):
        for name in ("max_iterations", "eta", "resource", "metric"):
            if getattr(matrix, name) is None:
                raise SpecError("required by hyperband", field=f"{path}.{to_camel(name)}")
        assert matrix.resource is not None and matrix.max_iterations is not None
        if matrix.eta is not None and matrix.eta <= 1:
            raise SpecError(f"expected a number above 1, got {matrix.eta:g}", field=f"{path}.eta")
        resource = matrix.resource
        value = matrix.max_iterations
        # Cast as Polyaxon's ``cast_value`` does: no type keeps the number as it comes.
        example[resource.name] = {"int": int, "float": float}.get(resource.type or "", int)(value)
        keys.append(resource.name)
    if isinstance(matrix, m.Tpe) and matrix.num_runs is None:
        raise SpecError("required by tpe", field=f"{path}.numRuns")
    return Expansion(kind, keys, 0, dims, seed=seed, example=example)


def _check_common(matrix: m.Matrix, path: str) -> None:
    """``concurrency`` is a positive integer; stopping percentages lie in (0, 100]."""
    if matrix.concurrency is not None and matrix.concurrency <= 0:
        raise SpecError(
            f"expected a positive integer, got {matrix.concurrency}", field=f"{path}.concurrency"
        )
    for index, rule in enumerate(matrix.early_stopping or []):
        where = f"{path}.earlyStopping[{index}]"
        percent = getattr(rule, "percent", None)
        if isinstance(rule, m.MetricEarlyStopping) and rule.policy is not None:
            percent, where = getattr(rule.policy, "percent", None), f"{where}.policy"
        if percent is not None and not 0 < percent <= 100:
            # Polyaxon accepts 150; a percentage outside (0, 100] can only be a mistake.
            raise SpecError(
                f"expected a percentage in (0, 100], got {percent:g}", field=f"{where}.percent"
            )
