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

__all__ = ["UNSUPPORTED_KINDS", "Expansion", "expand_matrix", "matrix_kind"]

#: Matrix kinds that validate but cannot run yet.
UNSUPPORTED_KINDS = frozenset({"hyperband", "bayes", "hyperopt", "iterative"})


def matrix_kind(matrix: m.Matrix) -> str:
    kind = matrix.__struct_config__.tag
    assert isinstance(kind, str)
    return kind


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a suggestion value, for duplicate detection."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
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
            frozen = _freeze(suggestion)
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


def _discrete_size(dimensions: dict[str, Dimension]) -> int | None:
    if any(isinstance(d, Distribution) for d in dimensions.values()):
        return None
    return math.prod(len(d) for d in dimensions.values() if isinstance(d, Discrete))


def expand_matrix(matrix: m.Matrix, path: str = "matrix", seed: int | None = None) -> Expansion:
    """Validate a matrix and return its lazy expansion; unsupported kinds raise SpecError.

    ``seed``: the one a random search drew when it first ran (journaled), used when the file
    gives none, so that a resumed sweep draws the same configurations."""
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
        total = _discrete_size(dims) or 0
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
        space = _discrete_size(dims)
        size = matrix.num_runs if space is None else min(space, matrix.num_runs)
        if matrix.seed is not None:
            seed = matrix.seed
        elif seed is None:
            seed = secrets.randbits(32)
        return Expansion(kind, list(dims), size, dims, num_runs=matrix.num_runs, seed=seed)
    _validate_unsupported(matrix, path)
    raise SpecError(
        f"{kind} is not supported yet; supported kinds are mapping, grid and random",
        field=f"{path}.kind",
    )


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


def _validate_unsupported(matrix: m.Matrix, path: str) -> None:
    """Check the fields the algorithm would need, so the file is known valid otherwise."""
    params = getattr(matrix, "params", None) or {}
    _dimensions(params, path)
    if isinstance(matrix, m.Hyperband):
        for name in ("max_iterations", "eta", "resource", "metric"):
            if getattr(matrix, name) is None:
                raise SpecError("required by hyperband", field=f"{path}.{to_camel(name)}")
