"""The ``validation`` rules of an IO (``gt``, ``regex``, ``options``...), on typed values."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from orchestrator.spec.models import Validation

__all__ = ["check_rules"]


def _digits(value: float) -> tuple[int, int]:
    """Total significant digits and decimal places, as pydantic counts them for decimals."""
    _sign, digits, exponent = Decimal(str(value)).normalize().as_tuple()
    if not isinstance(exponent, int):
        return 0, 0
    decimals = max(0, -exponent)
    total = max(len(digits), decimals) if exponent < 0 else len(digits) + exponent
    return total, decimals


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple | dict) else None


def check_rules(value: Any, rules: Validation | None) -> str | None:
    """Return the first broken rule as ``"expected ..., got ..."``, or None when all hold."""
    if rules is None or value is None:
        return None
    for check in _CHECKS:
        problem = check(value, rules)
        if problem:
            return problem
    return None


def _numbers(value: Any, r: Validation) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    bounds = [
        (r.gt, "> ", value > (r.gt or 0)),
        (r.ge, ">= ", value >= (r.ge or 0)),
        (r.lt, "< ", value < (r.lt or 0)),
        (r.le, "<= ", value <= (r.le or 0)),
    ]
    for bound, sign, holds in bounds:
        if bound is not None and not holds:
            return f"expected a value {sign}{bound:g}, got {value!r}"
    if r.multiple_of is not None:
        ratio = value / r.multiple_of
        if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9):
            return f"expected a multiple of {r.multiple_of:g}, got {value!r}"
    if r.min_digits is not None or r.max_digits is not None or r.decimal_places is not None:
        total, decimals = _digits(value)
        if r.max_digits is not None and total > r.max_digits:
            return f"expected at most {r.max_digits} digits, got {value!r}"
        if r.min_digits is not None and total < r.min_digits:
            return f"expected at least {r.min_digits} digits, got {value!r}"
        if r.decimal_places is not None and decimals > r.decimal_places:
            return f"expected at most {r.decimal_places} decimal places, got {value!r}"
    return None


def _strings(value: Any, r: Validation) -> str | None:
    if r.regex is not None and isinstance(value, str) and not re.search(r.regex, value):
        return f"expected a value matching {r.regex!r}, got {value!r}"
    size = _size(value)
    if size is not None:
        if r.min_length is not None and size < r.min_length:
            return f"expected a length of at least {r.min_length}, got {size}"
        if r.max_length is not None and size > r.max_length:
            return f"expected a length of at most {r.max_length}, got {size}"
    return None


def _membership(value: Any, r: Validation) -> str | None:
    if isinstance(value, str | list | tuple | dict):
        if r.contains is not None and r.contains not in value:
            return f"expected a value containing {r.contains!r}, got {value!r}"
        if r.excludes is not None and r.excludes in value:
            return f"expected a value without {r.excludes!r}, got {value!r}"
    if r.options is not None and value not in r.options:
        return f"expected one of {r.options!r}, got {value!r}"
    return None


def _collections(value: Any, r: Validation) -> str | None:
    if isinstance(value, list | tuple):
        if r.min_items is not None and len(value) < r.min_items:
            return f"expected at least {r.min_items} items, got {len(value)}"
        if r.max_items is not None and len(value) > r.max_items:
            return f"expected at most {r.max_items} items, got {len(value)}"
    if isinstance(value, dict):
        if r.keys is not None and set(value) != set(r.keys):
            return f"expected exactly the keys {sorted(r.keys)}, got {sorted(map(str, value))}"
        missing = [k for k in r.contains_keys or [] if k not in value]
        if missing:
            return f"expected the keys {missing} to be present"
        present = [k for k in r.excludes_keys or [] if k in value]
        if present:
            return f"expected the keys {present} to be absent"
    return None


_CHECKS: list[Callable[[Any, Validation], str | None]] = [
    _numbers,
    _strings,
    _membership,
    _collections,
]
