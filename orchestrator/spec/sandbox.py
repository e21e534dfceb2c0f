"""A Jinja sandbox that also bounds what a template may build and how long it may run.

Jinja's ``SandboxedEnvironment`` stops templates from reaching Python internals, not from
exhausting the machine: ``'a'|center(10**9)``, ``'%1000000000d' % 1``, ``'{:>1000000000}'
.format(1)``, ``(10**10000)**10000`` or two nested ``range(100000)`` loops each take gigabytes
or minutes. A polyaxonfile may come from a URL, so every render here is bounded:

- every string a step builds is at most :data:`MAX_TEMPLATE_CHARS` characters (the rendered
  field included), every list, tuple, dict or set at most :data:`MAX_TEMPLATE_ITEMS` items,
  every integer at most :data:`MAX_TEMPLATE_INT_BITS` bits; what one render builds, added up,
  at most :data:`MAX_TEMPLATE_TOTAL`;
- operations whose output can dwarf their input (repetition, ``**``, ``%`` and ``format``
  widths, ``center``, ``indent``, ``join``, ``replace``, ``wordwrap``, ``tojson``...) are
  checked *before* they run, from their arguments; the rest are checked on their result;
- loop iterations, calls, operators and filters count as steps, at most
  :data:`MAX_TEMPLATE_STEPS` a render, and a render stops after :data:`TEMPLATE_TIMEOUT_S`;
- a template has at most :data:`MAX_TEMPLATE_TOKENS` tokens (compiling costs memory and time
  in proportion to them).

A render that passes a bound fails with :class:`TemplateLimitError`, which the renderer turns
into a one-line error naming the field.

This module is the environment itself: it rewrites loops and ``~`` to counted helpers, measures
output, and intercepts operators and calls. The limits, the budget and the size estimates live
in ``render_limits.py`` (re-exported here); the bounded filters in ``guarded_filters.py``; the
checks on builtin-method calls and the ``range``/``lipsum`` globals in ``guarded_calls.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from orchestrator.spec.guarded_calls import bounded_lipsum, bounded_range, check_call
from orchestrator.spec.guarded_filters import guard_filters
from orchestrator.spec.render_limits import (
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_INT_BITS,
    MAX_TEMPLATE_ITEMS,
    MAX_TEMPLATE_STEPS,
    MAX_TEMPLATE_TOKENS,
    MAX_TEMPLATE_TOTAL,
    TEMPLATE_TIMEOUT_S,
    TemplateLimitError,
    as_text,
    budget_scope,
    check_percent,
    checked,
    checked_bits,
    need_chars,
    need_items,
    need_text,
    step,
)

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "MAX_TEMPLATE_INT_BITS",
    "MAX_TEMPLATE_ITEMS",
    "MAX_TEMPLATE_STEPS",
    "MAX_TEMPLATE_TOKENS",
    "MAX_TEMPLATE_TOTAL",
    "TEMPLATE_TIMEOUT_S",
    "BoundedSandbox",
    "TemplateLimitError",
    "render_budget",
]

_LOOP = "_bounded_loop"
_CONCAT = "_bounded_concat"


@contextmanager
def render_budget() -> Iterator[None]:
    """The budget of one render: steps, time and total size (there is none outside a render,
    e.g. while Jinja folds constants at compile time; the per-step size bounds still hold).
    The limits are read from this module when the render starts."""
    with budget_scope(TEMPLATE_TIMEOUT_S, MAX_TEMPLATE_STEPS, MAX_TEMPLATE_TOTAL):
        yield


# ---------------------------------------------------------------- loops, ~, output, concat


class _Counted:
    """A loop's iterable: each iteration is a step."""

    __slots__ = ("_inner", "_iterator")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._iterator = iter(inner)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        step()
        return item

    def __len__(self) -> int:
        return len(self._inner)  # TypeError when it has none: LoopContext then counts


@pass_context
def _bounded_loop(context: Any, iterable: Any) -> _Counted:
    return _Counted(iterable)


@pass_context
def _bounded_concat(context: Any, parts: list[Any]) -> str:
    """``a ~ b``: like Jinja's ``str_join``, measured first."""
    step()
    need_chars(sum(need_text(p) for p in parts))
    joined = "".join(map(str, parts))
    checked(joined)
    return joined


class _Bounder(NodeTransformer):
    """Routes every ``for`` loop's iterable and every ``~`` through the bounded helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT, [], [], None, None, lineno=node.lineno)


#: Integers this small print without being measured first.
_SMALL_INT_BITS = 64


def _finalize(value: Any) -> Any:
    """What ``{{ value }}`` prints: ``str(value)``, measured first."""
    step()
    if isinstance(value, str):
        return value
    if isinstance(value, float | bool) or value is None:
        return str(value)
    if type(value) is int and value.bit_length() <= _SMALL_INT_BITS:
        return str(value)  # at most 20 digits: nothing to measure
    need_text(value)
    return checked(str(value))


def _bounded_join(pieces: Any) -> str:
    """Jinja's ``concat`` (the render's output, set blocks, macro bodies), measured as the
    pieces come."""
    parts: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        need_chars(total, "an output")
        parts.append(piece)
    return "".join(parts)


@functools.lru_cache(maxsize=4)
def _guarded_filters(
    filters: frozenset[tuple[str, Callable[..., Any]]],
) -> dict[str, Callable[..., Any]]:
    """The guarded filter table, built once per set of filters rather than per environment
    (a spec compiles one environment; rewrapping ~50 filters each time showed in profiles)."""
    return guard_filters(dict(filters))


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with every bound above; ``concat`` and ``finalize`` measure output."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    concat = staticmethod(_bounded_join)

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.filters = dict(_guarded_filters(frozenset(self.filters.items())))
        self.filters[_LOOP] = _bounded_loop
        self.filters[_CONCAT] = _bounded_concat
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Bounder().visit(super()._parse(source, name, filename))
        assert isinstance(tree, nodes.Template)
        tree.set_environment(self)
        return tree

    def check_size(self, source: str) -> None:
        """Refuse a template with more than MAX_TEMPLATE_TOKENS tokens before compiling it."""
        for count, _token in enumerate(self.lex(source), 1):
            if count > MAX_TEMPLATE_TOKENS:
                raise TemplateLimitError(f"a template of more than {MAX_TEMPLATE_TOKENS:,} tokens")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        step()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, list | tuple) and isinstance(count, int):
                    need_items(len(seq) * count)
                elif isinstance(seq, str | bytes) and isinstance(count, int):
                    need_chars(len(seq) * count)
            if isinstance(left, int) and isinstance(right, int):
                checked_bits(left.bit_length() + right.bit_length() - 1)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1:
                checked_bits((abs(left).bit_length() - 1) * right)
        elif operator == "+":
            if isinstance(left, str | bytes) and isinstance(right, str | bytes):
                need_chars(len(left) + len(right))
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                need_items(len(left) + len(right))
        elif operator == "%" and isinstance(left, str | bytes | bytearray):
            check_percent(as_text(left), right)
        return checked(self.binop_table[operator](left, right))

    def call(
        __self,
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        step()
        args = check_call(__obj, args, kwargs)
        return checked(super().call(__context, __obj, *args, **kwargs))
