"""Jinja's filters, each a counted step with a checked result, and bounded stand-ins for those
whose output can dwarf their input.

``'a'|center(10**9)`` or ``xs|join(big)`` would build gigabytes before any check on the result
could run, so the filters below (and Polyaxon's ``map_format``) measure their arguments first
with the checks of ``render_limits.py`` and then call Jinja's own implementation, rendering
exactly what plain Jinja renders. :func:`guard_filters` wraps a whole filter table; the
sandbox (``sandbox.py``) installs the result.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from functools import wraps
from itertools import chain
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import pass_environment, pass_eval_context

from orchestrator.spec.render_limits import (
    check_percent,
    check_replace,
    checked,
    int_arg,
    need_chars,
    need_items,
    need_text,
    shape,
    step,
)

__all__ = ["guard_filters"]

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
    need_text(value)
    need_chars(int_arg(width))
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    size = need_text(s)
    unit = len(width) if isinstance(width, str) else int_arg(width)
    lines = str(s).count("\n") + 2
    need_chars(size + lines * max(unit, 0))
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
    need_text(s)
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
    need_chars(sum(len(x) for p in paragraphs for x in p) + joints * len(str(wrapstring)))
    need_items(lines)
    return str(wrapstring).join(str(wrapstring).join(p) for p in paragraphs)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    check_replace(str(s), str(old), str(new), count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value)
    need_items(len(items))
    sizes = sum(shape(x)[0] for x in items)
    need_chars(sizes + max(len(items) - 1, 0) * len(str(d)))
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    check_percent(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


def _batch(value: Any, linecount: Any, fill_with: Any = None) -> Any:
    need_items(int_arg(linecount))
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: Any, fill_with: Any = None) -> Any:
    need_items(int_arg(slices))
    return jinja_filters.sync_do_slice(value, slices, fill_with)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
    size, count, depth = shape(value)
    unit = len(indent) if isinstance(indent, str) else int_arg(indent)
    need_chars(6 * size + count * depth * max(unit, 0))
    return jinja_filters.do_tojson(eval_ctx, value, indent)


def _pprint(value: Any) -> Any:
    size, count, depth = shape(value)
    need_chars(size + count * (depth + 1))
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
    size = need_text(value)
    per_link = 64 + len(str(target or "")) + len(str(rel or ""))
    need_chars(2 * size + (size // 4 + 1) * per_link)  # a link is at least 4 characters
    return jinja_filters.do_urlize(
        eval_ctx, value, trim_url_limit, nofollow, target, rel, extra_schemes
    )


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's ``sum``; lists and tuples are concatenated once, not pairwise (quadratic)."""
    items = list(iterable)
    need_items(len(items))
    if attribute is None and isinstance(start, list | tuple):
        kind = type(start)
        if all(type(x) is kind for x in items):
            need_items(len(start) + sum(len(x) for x in items))
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
        step()
        if stringifies and len(args) > skip:
            need_text(args[skip])
        return checked(func(*args, **kwargs))

    return guarded


def guard_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``filters`` with the bounded stand-ins (and ``map_format``) put in, every one guarded."""
    merged = {**filters, **_REPLACED}
    return {name: _guarded(name, f) for name, f in merged.items()}
