"""Calls a template makes (builtin methods and the ``range`` and ``lipsum`` globals), checked
before they run.

``'x'.rjust(10**9)``, ``'ab'.replace('', big)`` or ``xs.extend(huge)`` build their output in C,
in one go: checking the result afterwards is too late. :func:`check_call` estimates what a
builtin method would build from its receiver and arguments (with the checks of
``render_limits.py``); the sandbox (``sandbox.py``) runs it before every call it forwards.
"""

from __future__ import annotations

from typing import Any

from jinja2.sandbox import safe_range
from jinja2.utils import generate_lorem_ipsum

from orchestrator.spec.render_limits import (
    as_text,
    check_format,
    check_replace,
    int_arg,
    need_chars,
    need_items,
    pieces,
    shape,
    step,
)

__all__ = ["bounded_lipsum", "bounded_range", "check_call"]

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
_GROWING_METHODS = frozenset({"append", "insert", "add", "setdefault"})
_EXTENDING_METHODS = frozenset({"extend", "update", "union"})


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Arguments that could make a builtin method build something huge, checked first;
    iterables it would consume are read once here (bounded) and handed over as lists."""
    target = getattr(obj, "__wrapped__", obj)  # Jinja wraps str.format for the sandbox
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if isinstance(owner, str | bytes | bytearray):
        return _check_text_method(owner, name, args, kwargs)
    if isinstance(owner, int) and name == "to_bytes":
        need_chars(int_arg(args[0] if args else kwargs.get("length", 1)))
    elif isinstance(owner, list | dict | set):
        if name in _GROWING_METHODS:
            need_items(len(owner) + 1)
        elif name in _EXTENDING_METHODS:
            extra = [list(a.items()) if isinstance(a, dict) else list(a) for a in args]
            need_items(len(owner) + sum(len(e) for e in extra) + len(kwargs))
            if name != "update" or not any(isinstance(a, dict) for a in args):
                args = tuple(extra)
    return args


def _check_text_method(
    text: str | bytes | bytearray, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """:func:`check_call` for a method of a string, bytes or bytearray."""
    if name in _WIDTH_METHODS:
        need_chars(int_arg(args[0] if args else kwargs.get("width")))
    elif name == "expandtabs":
        size = int_arg(args[0] if args else kwargs.get("tabsize", 8))
        tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
        need_chars(len(text) + tabs * size)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count")
        check_replace(as_text(text), as_text(args[0]), as_text(args[1]), count)
    elif name == "join" and args:
        items = list(args[0])
        need_items(len(items))
        need_chars(sum(shape(x)[0] for x in items) + len(items) * len(text))
        args = (items, *args[1:])
    elif name == "translate" and args:
        widest = max((shape(v)[0] for v in pieces(args[0])), default=1)
        need_chars(len(text) * max(widest, 1))
    elif name in ("format", "format_map") and isinstance(text, str):
        check_format(text, args, kwargs)
    return args


def bounded_lipsum(n: Any = 5, html: bool = True, min: Any = 20, max: Any = 100) -> str:
    """Jinja's ``lipsum`` global, measured first."""
    need_chars(int_arg(n) * int_arg(max) * 16, "lorem ipsum")
    return str(generate_lorem_ipsum(n, html, min, max))


def bounded_range(*args: Any) -> range:
    """The sandbox's ``range`` (itself capped in length), counted as a step."""
    step()
    return safe_range(*args)
