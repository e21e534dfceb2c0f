"""The bounds of one template render, and the pure checks that enforce them.

The sandbox (``sandbox.py``) and its guarded filters and calls (``guarded_filters.py``,
``guarded_calls.py``) all ask the same questions: would this string, list or integer be too
big, and has this render spent its steps, time or total size? The answers live here, apart
from any Jinja machinery, so every guard measures the same way and the limits are read in one
place. Nothing here builds what it measures: sizes are estimated from arguments (``_shape``
walks a value without calling ``str()`` on it), so a check costs at most about the bound.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "MAX_TEMPLATE_INT_BITS",
    "MAX_TEMPLATE_ITEMS",
    "MAX_TEMPLATE_STEPS",
    "MAX_TEMPLATE_TOKENS",
    "MAX_TEMPLATE_TOTAL",
    "TEMPLATE_TIMEOUT_S",
    "TemplateLimitError",
    "as_text",
    "budget_scope",
    "check_format",
    "check_percent",
    "check_replace",
    "checked",
    "checked_bits",
    "int_arg",
    "need_chars",
    "need_items",
    "need_text",
    "pieces",
    "shape",
    "step",
]

#: Longest string any step of a render may build, the rendered field included (Linux itself
#: caps one argv item or environment string at 128 KiB).
MAX_TEMPLATE_CHARS = 1 << 20
#: Most items in a list, tuple, dict or set a render may build.
MAX_TEMPLATE_ITEMS = 1 << 20
#: Largest integer a render may compute, in bits (about 19,700 decimal digits).
MAX_TEMPLATE_INT_BITS = 1 << 16
#: Everything one render builds, added up: characters of strings plus items of containers.
MAX_TEMPLATE_TOTAL = 16 << 20
#: Loop iterations, calls, operators, filters and outputs one render may perform.
MAX_TEMPLATE_STEPS = 1_000_000
#: Tokens one template may have.
MAX_TEMPLATE_TOKENS = 10_000
#: Wall-clock seconds one render may take.
TEMPLATE_TIMEOUT_S = 2.0


class TemplateLimitError(SecurityError):
    """A template went past one of the bounds above."""


# ---------------------------------------------------------------- the budget of one render


@dataclass
class _Budget:
    deadline: float
    steps: int
    total: int
    timeout_s: float  # the limits this budget started from, for the error messages
    max_steps: int
    max_total: int


_BUDGET: ContextVar[_Budget | None] = ContextVar("orchestrator_template_budget", default=None)


@contextmanager
def budget_scope(timeout_s: float, max_steps: int, max_total: int) -> Iterator[None]:
    """A budget of ``max_steps`` steps, ``timeout_s`` seconds from now and ``max_total``
    characters and items, for the renders inside (``sandbox.render_budget`` passes the limits,
    so that they are read where they are documented)."""
    deadline = time.monotonic() + timeout_s
    budget = _Budget(deadline, max_steps, max_total, timeout_s, max_steps, max_total)
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def step() -> None:
    """One step of the render: counted, and the clock checked."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps -= 1
    if budget.steps < 0:
        raise TemplateLimitError(
            f"more than {budget.max_steps:,} steps (loop iterations, calls, operators)"
        )
    if time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"rendering took longer than {budget.timeout_s:g}s")


def _spend(amount: int) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.total -= amount
    if budget.total < 0:
        raise TemplateLimitError(
            f"builds more than {budget.max_total:,} characters and items in all"
        )


# ---------------------------------------------------------------- sizes


def need_chars(estimate: int, what: str = "a string") -> None:
    if estimate > MAX_TEMPLATE_CHARS:
        raise TemplateLimitError(
            f"would build {what} of about {estimate:,} characters, more than {MAX_TEMPLATE_CHARS:,}"
        )


def need_items(count: int) -> None:
    if count > MAX_TEMPLATE_ITEMS:
        raise TemplateLimitError(f"would build {count:,} items, more than {MAX_TEMPLATE_ITEMS:,}")


def checked_bits(bits: int) -> None:
    if bits > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"an integer of about {bits:,} bits, more than {MAX_TEMPLATE_INT_BITS:,}"
        )


def checked(value: Any) -> Any:
    """A value some step produced: within the bounds, and charged to the render."""
    if isinstance(value, str | bytes | bytearray):
        need_chars(len(value))
        _spend(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        need_items(len(value))
        _spend(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"an integer of {value.bit_length():,} bits, more than {MAX_TEMPLATE_INT_BITS:,}"
        )
    return value


def shape(value: Any, limit: int = MAX_TEMPLATE_CHARS) -> tuple[int, int, int]:
    """About how long ``str(value)`` is, with its node count and depth; stops past ``limit``
    (a list can hold the same megabyte string a thousand times: the walk is what is bounded,
    never ``str()``)."""
    size = nodes_seen = depth = 0
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo and size <= limit and nodes_seen <= limit:
        item, level = todo.pop()
        nodes_seen += 1
        depth = max(depth, level)
        if isinstance(item, str):
            size += len(item) + (4 if level else 0)
        elif isinstance(item, bytes | bytearray):
            size += 4 * len(item) + 3
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += item.bit_length() // 3 + 2
        elif isinstance(item, float):
            size += 24
        elif isinstance(item, dict):
            size += 2 + 4 * len(item)
            todo.extend((k, level + 1) for k in item)
            todo.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            size += 2 + 2 * len(item)
            todo.extend((v, level + 1) for v in item)
        else:
            size += 64
    return size, nodes_seen, depth


def need_text(value: Any, what: str = "a string") -> int:
    """``str(value)`` must fit: returns its estimated size."""
    if isinstance(value, str):
        return len(value)
    size = shape(value)[0]
    need_chars(size, what)
    return size


def int_arg(value: Any) -> int:
    return value if isinstance(value, int) else 0


def as_text(value: Any) -> str:
    """Bytes as one character each (their length is what counts), anything else as str."""
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


def pieces(values: Any) -> list[Any]:
    """The values a ``%`` right-hand side (or a mapping argument) holds."""
    if isinstance(values, dict):
        return list(values.values())
    if isinstance(values, tuple | list):
        return list(values)
    return [values]


# ---------------------------------------------------------------- formatting and replacing

_FORMATTER = string.Formatter()
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?.")
_DIGITS = re.compile(r"\d+")


def _width_of(digits: str) -> int:
    return 10**15 if len(digits) > 15 else int(digits)


def check_percent(fmt: str, values: Any) -> None:
    """``fmt % values`` may not build more than MAX_TEMPLATE_CHARS: every conversion counts
    as wide as its width or precision, or as the largest value it could print."""
    conversions = _PERCENT_SPEC.findall(fmt)
    if not conversions:
        return
    parts = pieces(values)
    widest = 0
    for width, precision in conversions:
        for number in (width, precision):
            if number == "*":
                widest = max(widest, *(abs(int_arg(v)) for v in parts), 0)
            elif number:
                widest = max(widest, _width_of(number))
    need_chars(widest, "a formatted field")
    largest = max((shape(v)[0] for v in parts), default=0)
    need_chars(len(fmt) + len(conversions) * max(widest, largest, 24))


def check_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The same for ``str.format`` / ``format_map``: every number in a field's spec may be a
    width, and a nested ``{}`` width may be any integer argument."""
    fields = widest = 0
    nested = False
    try:
        for _text, name, spec, _conversion in _FORMATTER.parse(fmt):
            if name is None:
                continue
            fields += 1
            if spec:
                nested = nested or "{" in spec
                widest = max(widest, *(_width_of(d) for d in _DIGITS.findall(spec)), 0)
    except ValueError:
        return  # a malformed format: str.format raises the same error
    if not fields:
        return
    parts = [*args, *kwargs.values()]
    if len(args) == 1 and not kwargs and isinstance(args[0], dict):  # format_map
        parts = list(args[0].values())
    if nested:
        widest = max(widest, *(abs(int_arg(v)) for v in parts), 0)
    need_chars(widest, "a formatted field")
    largest = max((shape(v)[0] for v in parts), default=0)
    need_chars(len(fmt) + fields * max(widest, largest, 24))


def check_replace(s: str, old: str, new: str, count: Any) -> None:
    """``s.replace(old, new, count)`` may not build more than MAX_TEMPLATE_CHARS."""
    need_text(s)
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    need_chars(len(s) + found * max(len(new) - len(old), 0))
