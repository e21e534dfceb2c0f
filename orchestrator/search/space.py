"""Polyaxon's hyperparameters as the model libraries see them.

Discrete kinds (choice, range, linspace, logspace, geomspace) are an index into their values:
categorical, as Polyaxon's own tpe and hyperopt managers model them, up to
:data:`CATEGORICAL_LIMIT` values, an ordered integer beyond (a 10^6-value range as a
categorical would cost the library 10^6 weights per observation). The continuous kinds keep
Polyaxon's reading: ``loguniform`` bounds are in log space (``exp(U(low, high))``), ``normal``
is ``N(loc, scale)``, ``lognormal`` is ``exp(N(loc, scale))``; the ``q`` kinds round to a
multiple of ``q`` as hyperopt (and Polyaxon 2.18's tpe) do: ``round(x / q) * q``.

Nothing here imports a library: the searchers hand their module in.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from types import ModuleType
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec.hyperparams import Dimension, Discrete, Distribution

__all__ = [
    "CATEGORICAL_LIMIT",
    "LIBRARY_KINDS",
    "Axis",
    "check_kinds",
    "derive_seed",
    "freeze",
    "hyperopt_space",
    "index_of",
    "load",
    "optuna_axes",
    "quantize",
]

#: Discrete dimensions with more values than this are modelled as an ordered index.
CATEGORICAL_LIMIT = 1000

#: Discrete kinds whose values are increasing (``start < stop`` is checked), so a value's
#: index can be found by bisection.
ORDERED_KINDS = frozenset({"range", "linspace", "logspace", "geomspace"})
DISCRETE_KINDS = frozenset({"choice"} | ORDERED_KINDS)
UNIFORM_KINDS = frozenset({"uniform", "quniform", "loguniform", "qloguniform"})
NORMAL_KINDS = frozenset({"normal", "qnormal", "lognormal", "qlognormal"})
#: What Polyaxon's tpe (2.18) and hyperopt (2.16) managers accept: not pchoice, not the
#: date ranges.
LIBRARY_KINDS = DISCRETE_KINDS | UNIFORM_KINDS | NORMAL_KINDS

#: Normal kinds are sampled as ``u`` in ``[_EPS, 1 - _EPS]`` through the inverse normal CDF
#: (an exact normal prior on a bounded axis): about ±6 standard deviations.
_EPS = 1e-9
_NORMAL = NormalDist()


def load(module: str, algorithm: str, package: str) -> ModuleType:
    """Import a model library, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(
            f"{algorithm} needs {package}: pip install 'orchestrator[search]'",
            field="matrix.kind",
        ) from None


def check_kinds(
    dimensions: Mapping[str, Dimension], allowed: frozenset[str], algorithm: str
) -> None:
    """Refuse a parameter kind the algorithm cannot model, and bounds that make no space."""
    for key, dim in dimensions.items():
        where = f"matrix.params.{key}"
        if dim.kind not in allowed:
            raise SpecError(
                f"{dim.kind} cannot be used with {algorithm}; use one of "
                f"{', '.join(sorted(allowed))}",
                field=f"{where}.kind",
            )
        if isinstance(dim, Distribution):
            if dim.low is not None and dim.high is not None and not dim.low < dim.high:
                raise SpecError(
                    f"{dim.kind}: low must be below high, got low={dim.low:g}, high={dim.high:g}",
                    field=f"{where}.value",
                )
            if dim.scale is not None and not dim.scale > 0:
                raise SpecError(
                    f"{dim.kind}: scale must be above 0, got {dim.scale:g}", field=f"{where}.value"
                )


def derive_seed(seed: int, index: int) -> int:
    """The seed of suggestion ``index``: a suggestion depends on the sweep's seed, its index
    and the results so far, never on how many random numbers earlier ones drew (so a
    restored searcher suggests what the interrupted one would have)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def freeze(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable stand-in for a configuration, to tell one already run."""
    return tuple(sorted((str(k), repr(v)) for k, v in params.items()))


def quantize(value: float, q: float | None) -> float:
    return value if q is None else float(round(value / q) * q)


def index_of(dim: Discrete, value: Any) -> int | None:
    """Where ``value`` sits among a discrete dimension's values (None: not one of them)."""
    values = dim.values
    if dim.kind in ORDERED_KINDS and isinstance(value, int | float):
        at = bisect.bisect_left(values, value)
        for near in (at - 1, at):
            if 0 <= near < len(values) and math.isclose(values[near], value, rel_tol=1e-12):
                return near
        return None
    for position, candidate in enumerate(values):
        if candidate == value and type(candidate) is type(value):
            return position
    for position, candidate in enumerate(values):
        if candidate == value:
            return position
    return None


# ----------------------------------------------------------------------------- optuna
@dataclass(frozen=True)
class Axis:
    """One parameter as Optuna samples it: ``distribution`` gives a raw number that
    :meth:`value` turns into the parameter's value; :meth:`raw` goes back (restore)."""

    dimension: Dimension
    distribution: Any

    def value(self, raw: Any) -> Any:
        dim = self.dimension
        if isinstance(dim, Discrete):
            return dim.values[int(raw)]
        x = float(raw)
        if dim.kind in NORMAL_KINDS:
            assert dim.loc is not None and dim.scale is not None
            x = dim.loc + dim.scale * _NORMAL.inv_cdf(x)
        if dim.kind.removeprefix("q").startswith("log"):
            x = math.exp(x)
        return quantize(x, dim.q)

    def raw(self, value: Any) -> Any:
        dim = self.dimension
        if isinstance(dim, Discrete):
            return index_of(dim, value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        x = float(value)
        if dim.kind.removeprefix("q").startswith("log"):
            x = math.log(x) if x > 0 else -math.inf
        if dim.kind in NORMAL_KINDS:
            assert dim.loc is not None and dim.scale is not None
            u = _NORMAL.cdf((x - dim.loc) / dim.scale) if math.isfinite(x) else 0.0
            return min(1 - _EPS, max(_EPS, u))
        assert dim.low is not None and dim.high is not None
        return min(dim.high, max(dim.low, x))


def optuna_axes(dimensions: Mapping[str, Dimension], optuna: ModuleType) -> dict[str, Axis]:
    distributions = optuna.distributions
    axes: dict[str, Axis] = {}
    for key, dim in dimensions.items():
        if isinstance(dim, Discrete):
            count = len(dim.values)
            if count <= CATEGORICAL_LIMIT:
                made = distributions.CategoricalDistribution(tuple(range(count)))
            else:
                made = distributions.IntDistribution(0, count - 1)
        elif dim.kind in NORMAL_KINDS:
            made = distributions.FloatDistribution(_EPS, 1 - _EPS)
        else:
            made = distributions.FloatDistribution(dim.low, dim.high)
        axes[key] = Axis(dim, made)
    return axes


# ----------------------------------------------------------------------------- hyperopt
def hyperopt_space(dimensions: Mapping[str, Dimension], hp: ModuleType) -> dict[str, Any]:
    """hyperopt's own expression of each parameter (``hp.uniform``...), as Polyaxon 2.16's
    ``to_hyperopt`` builds it; a discrete parameter is its index (``hp.choice``)."""
    space: dict[str, Any] = {}
    for key, dim in dimensions.items():
        if isinstance(dim, Discrete):
            count = len(dim.values)
            if count <= CATEGORICAL_LIMIT:
                space[key] = hp.choice(key, list(range(count)))
            else:
                space[key] = hp.quniform(key, -0.5, count - 0.5, 1)
            continue
        make = getattr(hp, dim.kind)
        bounds = (dim.low, dim.high) if dim.kind in UNIFORM_KINDS else (dim.loc, dim.scale)
        space[key] = make(key, *bounds, *(() if dim.q is None else (dim.q,)))
    return space


def hyperopt_value(dim: Dimension, raw: Any) -> Any:
    """The parameter's value from what hyperopt drew (an index for a discrete one)."""
    if isinstance(dim, Discrete):
        return dim.values[min(len(dim.values) - 1, max(0, round(float(raw))))]
    return float(raw)


def hyperopt_raw(dim: Dimension, value: Any) -> Any:
    """What hyperopt would have drawn for ``value`` (restore)."""
    if isinstance(dim, Discrete):
        return index_of(dim, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
