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
"""

from __future__ import annotations

import re
import string
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from itertools import chain
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import nodes, pass_context, pass_environment, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

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

_LOOP = "_bounded_loop"
_CONCAT = "_bounded_concat"


class TemplateLimitError(SecurityError):
    """A template went past one of the bounds above."""


@dataclass
class _Budget:
    deadline: float
    steps: int
    total: int


_BUDGET: ContextVar[_Budget | None] = ContextVar("orchestrator_template_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """The budget of one render: steps, time and total size (there is none outside a render,
    e.g. while Jinja folds constants at compile time; the per-step size bounds still hold)."""
    deadline = time.monotonic() + TEMPLATE_TIMEOUT_S
    token = _BUDGET.set(_Budget(deadline, MAX_TEMPLATE_STEPS, MAX_TEMPLATE_TOTAL))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps -= 1
    if budget.steps < 0:
        raise TemplateLimitError(
            f"more than {MAX_TEMPLATE_STEPS:,} steps (loop iterations, calls, operators)"
        )
    if time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"rendering took longer than {TEMPLATE_TIMEOUT_S:g}s")


def _spend(amount: int) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.total -= amount
    if budget.total < 0:
        raise TemplateLimitError(
            f"builds more than {MAX_TEMPLATE_TOTAL:,} characters and items in all"
        )


def _need_chars(estimate: int, what: str = "a string") -> None:
    if estimate > MAX_TEMPLATE_CHARS:
        raise TemplateLimitError(
            f"would build {what} of about {estimate:,} characters, more than {MAX_TEMPLATE_CHARS:,}"
        )


def _need_items(count: int) -> None:
    if count > MAX_TEMPLATE_ITEMS:
        raise TemplateLimitError(f"would build {count:,} items, more than {MAX_TEMPLATE_ITEMS:,}")


def _checked(value: Any) -> Any:
    """A value some step produced: within the bounds, and charged to the render."""
    if isinstance(value, str | bytes | bytearray):
        _need_chars(len(value))
        _spend(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        _need_items(len(value))
        _spend(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"an integer of {value.bit_length():,} bits, more than {MAX_TEMPLATE_INT_BITS:,}"
        )
    return value


def _shape(value: Any, limit: int = MAX_TEMPLATE_CHARS) -> tuple[int, int, int]:
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


def _need_text(value: Any, what: str = "a string") -> int:
    """``str(value)`` must fit: returns its estimated size."""
    if isinstance(value, str):
        return len(value)
    size = _shape(value)[0]
    _need_chars(size, what)
    return size


def _int_arg(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _text(value: Any) -> str:
    """Bytes as one character each (their length is what counts), anything else as str."""
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


# ---------------------------------------------------------------- formatting (% and format)

_FORMATTER = string.Formatter()
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?.")
_DIGITS = re.compile(r"\d+")


def _width_of(digits: str) -> int:
    return 10**15 if len(digits) > 15 else int(digits)


def _pieces(values: Any) -> list[Any]:
    if isinstance(values, dict):
        return list(values.values())
    if isinstance(values, tuple | list):
        return list(values)
    return [values]


def check_percent(fmt: str, values: Any) -> None:
    """``fmt % values`` may not build more than MAX_TEMPLATE_CHARS: every conversion counts
    as wide as its width or precision, or as the largest value it could print."""
    conversions = _PERCENT_SPEC.findall(fmt)
    if not conversions:
        return
    pieces = _pieces(values)
    widest = 0
    for width, precision in conversions:
        for number in (width, precision):
            if number == "*":
                widest = max(widest, *(abs(_int_arg(v)) for v in pieces), 0)
            elif number:
                widest = max(widest, _width_of(number))
    _need_chars(widest, "a formatted field")
    largest = max((_shape(v)[0] for v in pieces), default=0)
    _need_chars(len(fmt) + len(conversions) * max(widest, largest, 24))


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
    pieces = [*args, *kwargs.values()]
    if len(args) == 1 and not kwargs and isinstance(args[0], dict):  # format_map
        pieces = list(args[0].values())
    if nested:
        widest = max(widest, *(abs(_int_arg(v)) for v in pieces), 0)
    _need_chars(widest, "a formatted field")
    largest = max((_shape(v)[0] for v in pieces), default=0)
    _need_chars(len(fmt) + fields * max(widest, largest, 24))


# ---------------------------------------------------------------- filters

#: Filters that turn their input into text first (``str(a list)`` can be huge).
_STRINGIFYING = frozenset(
    {
        "capitalize",
        "e",
        "escape",
        "forceescape",
        "lower",
        "safe",
        "string",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
        "xmlattr",
    }
)


def _center(value: Any, width: Any = 80) -> Any:
    _need_text(value)
    _need_chars(_int_arg(width))
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    size = _need_text(s)
    unit = len(width) if isinstance(width, str) else _int_arg(width)
    lines = str(s).count("\n") + 2
    _need_chars(size + lines * max(unit, 0))
    return jinja_filters.do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's ``wordwrap``, measured before the lines are joined with ``wrapstring``."""
    _need_text(s)
    if wrapstring is None:
        wrapstring = environment.newline_sequence
    paragraphs = [
        textwrap.wrap(
            line,
            width=width,
            expand_tabs=False,
            replace_whitespace=False,
            break_long_words=break_long_words,
            break_on_hyphens=break_on_hyphens,
        )
        for line in str(s).splitlines()
    ]
    lines = sum(len(p) for p in paragraphs)
    joints = sum(max(len(p) - 1, 0) for p in paragraphs) + max(len(paragraphs) - 1, 0)
    _need_chars(sum(len(x) for p in paragraphs for x in p) + joints * len(str(wrapstring)))
    _need_items(lines)
    return str(wrapstring).join(str(wrapstring).join(p) for p in paragraphs)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    _check_replace(str(s), str(old), str(new), count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _check_replace(s: str, old: str, new: str, count: Any) -> None:
    _need_text(s)
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _need_chars(len(s) + found * max(len(new) - len(old), 0))


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value)
    _need_items(len(items))
    sizes = sum(_shape(x)[0] for x in items)
    _need_chars(sizes + max(len(items) - 1, 0) * len(str(d)))
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    check_percent(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


def _batch(value: Any, linecount: Any, fill_with: Any = None) -> Any:
    _need_items(_int_arg(linecount))
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: Any, fill_with: Any = None) -> Any:
    _need_items(_int_arg(slices))
    return jinja_filters.sync_do_slice(value, slices, fill_with)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
    size, count, depth = _shape(value)
    unit = len(indent) if isinstance(indent, str) else _int_arg(indent)
    _need_chars(6 * size + count * depth * max(unit, 0))
    return jinja_filters.do_tojson(eval_ctx, value, indent)


def _pprint(value: Any) -> Any:
    size, count, depth = _shape(value)
    _need_chars(size + count * (depth + 1))
    return jinja_filters.do_pprint(value)


@pass_eval_context
def _urlize(
    eval_ctx: Any,
    value: Any,
    trim_url_limit: Any = None,
    nofollow: bool = False,
    target: Any = None,
    rel: Any = None,
    extra_schemes: Any = None,
) -> Any:
    size = _need_text(value)
    per_link = 64 + len(str(target or "")) + len(str(rel or ""))
    _need_chars(2 * size + (size // 4 + 1) * per_link)  # a link is at least 4 characters
    return jinja_filters.do_urlize(
        eval_ctx, value, trim_url_limit, nofollow, target, rel, extra_schemes
    )


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's ``sum``; lists and tuples are concatenated once, not pairwise (quadratic)."""
    items = list(iterable)
    _need_items(len(items))
    if attribute is None and isinstance(start, list | tuple):
        kind = type(start)
        if all(type(x) is kind for x in items):
            _need_items(len(start) + sum(len(x) for x in items))
            return kind(chain(start, *items))
    return jinja_filters.sync_do_sum(environment, items, attribute, start)


def _map_format(value: Any, pattern: Any, variable_name: str | None = None) -> str:
    """Polyaxon's ``map_format`` filter (``"%s" % value``), bounded like ``%``."""
    values = {variable_name: value} if variable_name else value
    check_percent(str(pattern), values)
    return str(str(pattern) % values)


_REPLACED: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "join": _join,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
    "tojson": _tojson,
    "pprint": _pprint,
    "urlize": _urlize,
    "sum": _sum,
    "map_format": _map_format,
}


def _guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Every filter is a step, and its result is checked; text filters check their input."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    stringifies = name in _STRINGIFYING

    @wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same first argument
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if stringifies and len(args) > skip:
            _need_text(args[skip])
        return _checked(func(*args, **kwargs))

    return guarded


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
        _step()
        return item

    def __len__(self) -> int:
        return len(self._inner)  # TypeError when it has none: LoopContext then counts


@pass_context
def _bounded_loop(context: Any, iterable: Any) -> _Counted:
    return _Counted(iterable)


@pass_context
def _bounded_concat(context: Any, parts: list[Any]) -> str:
    """``a ~ b``: like Jinja's ``str_join``, measured first."""
    _step()
    _need_chars(sum(_need_text(p) for p in parts))
    joined = "".join(map(str, parts))
    _checked(joined)
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


def _finalize(value: Any) -> Any:
    """What ``{{ value }}`` prints: ``str(value)``, measured first."""
    _step()
    if isinstance(value, str):
        return value
    if isinstance(value, float | bool) or value is None:
        return str(value)
    _need_text(value)
    return _checked(str(value))


def _bounded_join(pieces: Any) -> str:
    """Jinja's ``concat`` (the render's output, set blocks, macro bodies), measured as the
    pieces come."""
    parts: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        _need_chars(total, "an output")
        parts.append(piece)
    return "".join(parts)


# ---------------------------------------------------------------- calls and operators

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
_GROWING_METHODS = frozenset({"append", "insert", "add", "setdefault"})
_EXTENDING_METHODS = frozenset({"extend", "update", "union"})


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Arguments that could make a builtin method build something huge, checked first;
    iterables it would consume are read once here (bounded) and handed over as lists."""
    target = getattr(obj, "__wrapped__", obj)  # Jinja wraps str.format for the sandbox
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if isinstance(owner, str | bytes | bytearray):
        text = owner
        if name in _WIDTH_METHODS:
            _need_chars(_int_arg(args[0] if args else kwargs.get("width")))
        elif name == "expandtabs":
            size = _int_arg(args[0] if args else kwargs.get("tabsize", 8))
            tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
            _need_chars(len(text) + tabs * size)
        elif name == "replace" and len(args) >= 2:
            count = args[2] if len(args) > 2 else kwargs.get("count")
            _check_replace(_text(text), _text(args[0]), _text(args[1]), count)
        elif name == "join" and args:
            items = list(args[0])
            _need_items(len(items))
            _need_chars(sum(_shape(x)[0] for x in items) + len(items) * len(text))
            args = (items, *args[1:])
        elif name == "translate" and args:
            widest = max((_shape(v)[0] for v in _pieces(args[0])), default=1)
            _need_chars(len(text) * max(widest, 1))
        elif name in ("format", "format_map") and isinstance(text, str):
            check_format(text, args, kwargs)
    elif isinstance(owner, int) and name == "to_bytes":
        _need_chars(_int_arg(args[0] if args else kwargs.get("length", 1)))
    elif isinstance(owner, list | dict | set):
        if name in _GROWING_METHODS:
            _need_items(len(owner) + 1)
        elif name in _EXTENDING_METHODS:
            extra = [list(a.items()) if isinstance(a, dict) else list(a) for a in args]
            _need_items(len(owner) + sum(len(e) for e in extra) + len(kwargs))
            if name != "update" or not any(isinstance(a, dict) for a in args):
                args = tuple(extra)
    return args


def _lipsum(n: Any = 5, html: bool = True, min: Any = 20, max: Any = 100) -> str:
    _need_chars(_int_arg(n) * _int_arg(max) * 16, "lorem ipsum")
    return str(generate_lorem_ipsum(n, html, min, max))


def _range(*args: Any) -> range:
    _step()
    return safe_range(*args)


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with every bound above; ``concat`` and ``finalize`` measure output."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    concat = staticmethod(_bounded_join)

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        filters = {**self.filters, **_REPLACED}
        self.filters = {name: _guarded(name, f) for name, f in filters.items()}
        self.filters[_LOOP] = _bounded_loop
        self.filters[_CONCAT] = _bounded_concat
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum

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
        _step()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, list | tuple) and isinstance(count, int):
                    _need_items(len(seq) * count)
                elif isinstance(seq, str | bytes) and isinstance(count, int):
                    _need_chars(len(seq) * count)
            if isinstance(left, int) and isinstance(right, int):
                _checked_bits(left.bit_length() + right.bit_length() - 1)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1:
                _checked_bits((abs(left).bit_length() - 1) * right)
        elif operator == "+":
            if isinstance(left, str | bytes) and isinstance(right, str | bytes):
                _need_chars(len(left) + len(right))
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                _need_items(len(left) + len(right))
        elif operator == "%" and isinstance(left, str | bytes | bytearray):
            check_percent(_text(left), right)
        return _checked(self.binop_table[operator](left, right))

    def call(
        __self,
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _step()
        args = _check_call(__obj, args, kwargs)
        return _checked(super().call(__context, __obj, *args, **kwargs))


def _checked_bits(bits: int) -> None:
    if bits > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"an integer of about {bits:,} bits, more than {MAX_TEMPLATE_INT_BITS:,}"
        )
