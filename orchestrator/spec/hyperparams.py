"""Hyperparameter kinds: read each value form, generate values exactly as numpy would.

Polyaxon expands with numpy (``np.arange``, ``np.linspace``, ``np.logspace``, ``np.geomspace``);
the arithmetic below repeats numpy's own, operation by operation, so grid values are the same
floats without depending on numpy. Discrete kinds become a :class:`Discrete`: a list of values
(choice), or :class:`Values` computed from their index (range, linspace..., dates), so a
10^6-value range costs a few numbers; distributions become a
:class:`Distribution` sampled with a seeded :class:`random.Random`.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m

__all__ = [
    "Dimension",
    "Discrete",
    "Distribution",
    "Values",
    "arange",
    "build_dimension",
    "geomspace",
    "linspace",
    "logspace",
]

#: Largest number of values one discrete dimension may generate.
MAX_DIMENSION_VALUES = 10_000_000


@dataclass(frozen=True)
class Discrete:
    """A finite list of values (choice, range, linspace, ...), possibly weighted (pchoice)."""

    kind: str
    values: Sequence[Any]
    weights: Sequence[float] | None = None

    def sample(self, rng: random.Random) -> Any:
        if self.weights is None:
            return self.values[rng.randrange(len(self.values))]
        return rng.choices(self.values, weights=self.weights)[0]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Distribution:
    """A continuous distribution (uniform, normal, ...): ``draw`` samples it for random
    search; the numbers let model-based searchers map it onto a library's own space."""

    kind: str
    draw: Callable[[random.Random], float]
    #: ``low``/``high`` (the uniform kinds: in log space for the log kinds, as Polyaxon reads
    #: them) or ``loc``/``scale`` (the normal kinds); ``q`` for the quantized kinds.
    low: float | None = None
    high: float | None = None
    loc: float | None = None
    scale: float | None = None
    q: float | None = None

    def sample(self, rng: random.Random) -> float:
        return self.draw(rng)


Dimension = Discrete | Distribution

#: Kinds that need a numeric input, and those that need a date/datetime input.
NUMERIC_KINDS = frozenset(
    {
        "range",
        "linspace",
        "logspace",
        "geomspace",
        "uniform",
        "quniform",
        "loguniform",
        "qloguniform",
        "normal",
        "qnormal",
        "lognormal",
        "qlognormal",
    }
)
DATE_KINDS = {"daterange": "date", "datetimerange": "datetime"}


# ----------------------------------------------------------------------------- lazy values
class Values(Sequence[Any]):
    """``length`` values computed from their index on demand: a range of 10^6 values costs a
    few numbers, not a 73 MB list. Compares equal to any sequence of the same values."""

    __slots__ = ("_at", "_length")

    def __init__(self, length: int, at: Callable[[int], Any]) -> None:
        self._length = max(0, length)
        self._at = at

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("index out of range")
        return self._at(index)

    def __iter__(self) -> Iterator[Any]:
        return map(self._at, range(self._length))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self[:3])
        return f"Values([{shown}{', ...' if self._length > 3 else ''}], length={self._length})"


def _too_many(count: int) -> None:
    if count > MAX_DIMENSION_VALUES:
        raise ValueError(f"generates {count:,} values, more than {MAX_DIMENSION_VALUES:,}")


# ----------------------------------------------------------------------------- numpy, exactly
def arange(start: float, stop: float, step: float) -> Values:
    """``np.arange(start, stop, step)``: numpy fills ``start + i*delta`` with
    ``delta = (start + step) - start``, and counts ``ceil((stop - start) / step)`` values."""
    length = math.ceil((stop - start) / step)
    _too_many(length)
    if all(isinstance(v, int) for v in (start, stop, step)):
        return Values(length, lambda i: start + i * step)
    first = start
    second = start + step
    delta = second - first
    return Values(length, lambda i: first if i == 0 else second if i == 1 else first + i * delta)


def linspace(start: float, stop: float, num: int, endpoint: bool = True) -> Values:
    """``np.linspace``: ``i * step + start`` with the last value set to ``stop``."""
    if num < 0:
        raise ValueError(f"number of samples, {num}, must be non-negative")
    _too_many(num)
    start, stop = float(start), float(stop)
    div = (num - 1) if endpoint else num
    delta = stop - start
    last = num - 1 if endpoint and num > 1 else -1
    step = delta / div if div > 0 else 0.0

    def at(i: int) -> float:
        if i == last:
            return stop
        if div <= 0:
            return i * delta + start
        return (i / div) * delta + start if step == 0 else i * step + start

    return Values(num, at)


def logspace(start: float, stop: float, num: int, base: float = 10.0) -> Values:
    """``np.logspace``: ``base ** linspace(start, stop, num)``."""
    exponents = linspace(start, stop, num)
    base = float(base)
    return Values(num, lambda i: math.pow(base, exponents[i]))


def geomspace(start: float, stop: float, num: int) -> Values:
    """``np.geomspace``: a logspace between the log10 of the ends, with both ends exact."""
    start, stop = float(start), float(stop)
    if start == 0 or stop == 0:
        raise ValueError("geometric sequence cannot include zero")
    sign = 1.0
    if start < 0 and stop < 0:
        sign, start, stop = -1.0, -start, -stop
    elif start < 0 or stop < 0:
        raise ValueError("geometric sequence needs both ends of the same sign")
    inner = logspace(math.log10(start), math.log10(stop), num, base=10.0)
    last = num - 1

    def at(i: int) -> float:
        if i == 0:
            return sign * start
        return sign * (stop if i == last else inner[i])

    return Values(num, at)


# ----------------------------------------------------------------------------- value forms
_FORMS: dict[str, tuple[list[str], list[str], bool]] = {
    # kind: (required keys, optional keys, start < stop checked)
    "range": (["start", "stop", "step"], [], True),
    "daterange": (["start", "stop", "step"], [], True),
    "datetimerange": (["start", "stop", "step"], [], True),
    "linspace": (["start", "stop", "num"], [], True),
    "geomspace": (["start", "stop", "num"], [], True),
    "logspace": (["start", "stop", "num"], ["base"], True),
    "uniform": (["low", "high"], ["size"], False),
    "loguniform": (["low", "high"], ["size"], False),
    "quniform": (["low", "high", "q"], ["size"], False),
    "qloguniform": (["low", "high", "q"], ["size"], False),
    "normal": (["loc", "scale"], ["size"], False),
    "lognormal": (["loc", "scale"], ["size"], False),
    "qnormal": (["loc", "scale", "q"], ["size"], False),
    "qlognormal": (["loc", "scale", "q"], ["size"], False),
}


def _number(text: Any, key: str, *, integer: bool = False) -> float:
    """Read one bound: numbers as they are, strings like ``"0.1"`` or ``"5"`` parsed."""
    if isinstance(text, bool):
        raise ValueError(f"{key}: expected a number, got {text!r}")
    if isinstance(text, int | float):
        value: float = text
    else:
        try:
            stripped = str(text).strip()
            value = int(stripped) if stripped.lstrip("+-").isdigit() else float(stripped)
        except ValueError:
            raise ValueError(f"{key}: expected a number, got {text!r}") from None
    if integer:
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"{key}: expected an integer, got {text!r}")
    return value


def _fields(kind: str, value: Any) -> dict[str, Any]:
    """Turn ``"a:b:c"``, ``[a, b, c]`` or ``{start: a, ...}`` into named fields."""
    required, optional, _ = _FORMS[kind]
    keys = required + optional
    if isinstance(value, str) and kind not in DATE_KINDS:
        if ":" not in value:
            raise ValueError("expected a string of values separated by ':'")
        value = value.split(":")
    if isinstance(value, list):
        if len(value) > len(keys):
            raise ValueError(f"expected at most {len(keys)} values ({', '.join(keys)})")
        parts: dict[str, Any] = dict(zip(keys, value, strict=False))
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; expected {', '.join(keys)}")
        parts = dict(value)
    else:
        forms = "a list or a mapping" if kind in DATE_KINDS else "'a:b:c', a list or a mapping"
        raise ValueError(f"expected {forms}, got {value!r}")
    missing = [k for k in required if parts.get(k) is None]
    if missing:
        raise ValueError(
            f"expected {len(required)} values ({', '.join(required)}); missing {', '.join(missing)}"
        )
    return parts


def _ordered(kind: str, low: Any, high: Any) -> None:
    required, _, ordered = _FORMS[kind]
    if ordered and low >= high:
        raise ValueError(
            f"{required[1]} must be greater than {required[0]}, "
            f"got {required[0]}={low}, {required[1]}={high}"
        )


def _date(value: Any, key: str, with_time: bool) -> dt.date:
    if with_time:
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            return parsed if with_time else parsed.date()
    wanted = "a datetime" if with_time else "a date"
    raise ValueError(f"{key}: expected {wanted}, got {value!r}")


def _date_range(kind: str, value: Any) -> Values:
    with_time = kind == "datetimerange"
    parts = _fields(kind, value)
    start = _date(parts["start"], "start", with_time)
    stop = _date(parts["stop"], "stop", with_time)
    step = _number(parts["step"], "step", integer=True)
    _ordered(kind, start, stop)
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    delta = dt.timedelta(seconds=step) if with_time else dt.timedelta(days=step)
    count = math.ceil((stop - start) / delta)
    _too_many(count)
    return Values(count, lambda i: start + i * delta)


def _space(kind: str, value: Any) -> Values:
    parts = _fields(kind, value)
    start = float(_number(parts["start"], "start"))
    stop = float(_number(parts["stop"], "stop"))
    if kind == "range":
        step = _number(parts["step"], "step")
        _ordered(kind, start, stop)
        if not step:
            raise ValueError(f"step must be > 0, got {parts['step']!r}")
        return arange(start, stop, step)
    num = int(_number(parts["num"], "num", integer=True))
    _ordered(kind, start, stop)
    if num <= 0:
        raise ValueError(f"num must be > 0, got {num}")
    if kind == "linspace":
        return linspace(start, stop, num)
    if kind == "geomspace":
        return geomspace(start, stop, num)
    base = parts.get("base")
    return logspace(start, stop, num, 10.0 if base is None else _number(base, "base", integer=True))


def _quantize(q: float) -> Callable[[float], float]:
    # hypertune: np.round(value // q) * q
    return lambda x: float(round(x // q) * q)


def _distribution(kind: str, value: Any) -> Distribution:
    parts = _fields(kind, value)
    numbers: dict[str, float] = {}
    if kind.removeprefix("q") in {"uniform", "loguniform"}:
        a, b = _number(parts["low"], "low"), _number(parts["high"], "high")
        numbers.update(low=a, high=b)

        def base(rng: random.Random) -> float:
            return a + (b - a) * rng.random()
    else:
        a, b = _number(parts["loc"], "loc"), _number(parts["scale"], "scale")
        numbers.update(loc=a, scale=b)

        def base(rng: random.Random) -> float:
            return rng.gauss(a, b)

    if kind.removeprefix("q").startswith("log"):
        plain = base

        def base(rng: random.Random) -> float:
            return math.exp(plain(rng))

    if kind.startswith("q"):
        q = _number(parts["q"], "q")
        if not q:
            raise ValueError(f"q must be > 0, got {parts['q']!r}")
        quantize, unquantized = _quantize(q), base
        numbers.update(q=q)

        def base(rng: random.Random) -> float:
            return quantize(unquantized(rng))

    return Distribution(kind, base, **numbers)


def _pchoice(value: Any) -> Discrete:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of [value, probability] pairs")
    values, probabilities = [], []
    for index, pair in enumerate(value):
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and isinstance(pair[1], float)
            and 0 <= pair[1] < 1
        ):
            raise ValueError(
                f"item {index}: expected [value, probability] with a float "
                f"probability in [0, 1), got {pair!r}"
            )
        values.append(pair[0])
        probabilities.append(pair[1])
    if sum(probabilities) > 1:
        raise ValueError("the probabilities must sum to at most 1")
    # numpy's multinomial gives the last outcome whatever probability the others leave.
    weights = [*probabilities[:-1], 1 - sum(probabilities[:-1])]
    return Discrete("pchoice", values, weights)


def build_dimension(param: m.HpParam, path: str) -> Dimension:
    """Read one hyperparameter into a dimension; errors name ``path`` (``matrix.params.lr``)."""
    kind = param.__struct_config__.tag
    assert isinstance(kind, str)
    try:
        if kind == "choice":
            if not isinstance(param.value, list) or not param.value:
                raise ValueError("expected a non-empty list of values")
            return Discrete(kind, list(param.value))
        if kind == "pchoice":
            return _pchoice(param.value)
        if kind in DATE_KINDS:
            return Discrete(kind, _date_range(kind, param.value))
        if kind in {"range", "linspace", "logspace", "geomspace"}:
            return Discrete(kind, _space(kind, param.value))
        return _distribution(kind, param.value)
    except (ValueError, ArithmeticError) as exc:
        raise SpecError(f"{kind}: {exc}", field=f"{path}.value") from None
