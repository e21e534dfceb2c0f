"""Checking a mapping's entries without rendering each one: one full render per shape.

A mapping of 263k entries used to be rendered entry by entry at compile time, only to find
the few that fail (an unknown name, a NUL byte, a bound). Whether a render fails depends on
the values only through the names they define and their types, *when* every template of the
run merely looks names up (``{{ i }}``, ``{{ params.i.as_arg }}``, ``{{ globals.uuid }}``: no
filter, call, operator, test or loop) and the values are small plain scalars. Then two entries
with the same keys and value types render alike: the first is rendered in full (its errors
are the ones a user sees), the others only have their values typed. Anything else (a filter,
an ``init`` template, a long, templated or escaped string, a list value...) is rendered in
full, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.parser import Parser

from orchestrator.spec.render_limits import MAX_TEMPLATE_CHARS
from orchestrator.spec.templating import Renderer

__all__ = ["EntryShapes", "lookups"]

#: Longest string value rendered alike without a render of its own: short enough that no
#: lookup of it can approach a render bound, long enough for names, paths and ids.
MAX_ALIKE_CHARS = 256
#: Most text a lookup of one value prints: its repr (escapes take up to 10 characters a
#: character) three times over in ``params.X`` (value, as_str, as_arg), plus the keys.
_PER_VALUE = 32 * (MAX_ALIKE_CHARS + 64)
#: A render's output may reach only this share of its bound to be taken as alike.
_SAFE_SHARE = MAX_TEMPLATE_CHARS // 4
#: Scalar types whose text and failures depend only on the type (ints of at most 64 bits).
_PLAIN = (str, int, float, bool, type(None))
#: Characters that make a string value render differently: Jinja markup, and a NUL or a
#: backslash, which ``literal_eval`` of a rendered env value or argv string may turn into one.
_UNSAFE = ("{{", "{%", "\0", "\\")
#: Context names whose whole value (or ``params.X``, a dict) prints every value at once.
_WIDE_HEADS = frozenset({"params", "globals"})


def lookups(renderer: Renderer, source: str) -> tuple[int, int] | None:
    """How many narrow and wide lookups ``source`` prints when it does nothing else (text,
    ``{{ a }}``, ``{{ a.b }}``, ``{{ a['b'] }}``); None when it does anything else or does
    not parse. A wide lookup (``params``, ``params.X``, ``params.as_args``, ``globals``) may
    print every value; a narrow one prints one."""
    if "{{" not in source and "{%" not in source:
        return 0, 0
    try:
        renderer.env.check_size(source)
        tree = Parser(renderer.env, source).parse()
    except Exception:  # whatever it is, the full render reports it
        return None
    narrow = wide = 0
    for output in tree.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                continue
            path = _lookup_path(node)
            if path is None:
                return None
            head = path[0]
            if head in _WIDE_HEADS and (len(path) == 1 or (head == "params" and len(path) == 2)):
                wide += 1
            else:
                narrow += 1
    return narrow, wide


def _lookup_path(node: nodes.Node) -> list[str] | None:
    """``a.b['c']`` as ``["a", "b", "c"]``; None for anything but names and lookups."""
    path: list[str] = []
    while True:
        if isinstance(node, nodes.Name):
            return [node.name, *reversed(path)] if node.ctx == "load" else None
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            path.append(node.arg.value)
            node = node.node
        else:
            return None


class EntryShapes:
    """The shapes (keys and value types) of entries already rendered in full."""

    def __init__(self, renderer: Renderer, templates: Iterable[str] | None, fixed: int) -> None:
        """``templates``: every template a run renders (None: one of them is not a plain
        template, e.g. in ``init``); ``fixed``: the most text a lookup prints whatever the
        values (``globals`` with its paths), at least ``4 * MAX_ALIKE_CHARS``."""
        fixed = max(fixed, 4 * MAX_ALIKE_CHARS)
        self._seen: set[tuple[tuple[str, ...], tuple[type, ...]]] = set()
        #: Most values an entry may have to render alike (0: never).
        self._max_values = 0
        if templates is None:
            return
        most = _SAFE_SHARE  # no template prints every value: any number renders alike
        for source in templates:
            counts = lookups(renderer, source)
            if counts is None:
                return
            narrow, wide = counts
            # A narrow lookup prints one value (at most MAX_ALIKE_CHARS) or a part of globals.
            room = _SAFE_SHARE - len(source) - (narrow + wide) * fixed
            if room < 0:
                return
            if wide:
                most = min(most, room // (wide * _PER_VALUE))
        self._max_values = most

    def _shape(self, values: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[type, ...]] | None:
        """The entry's shape when its values are plain enough to render alike, else None."""
        if len(values) > self._max_values:
            return None
        for value in values.values():
            kind = type(value)
            if kind is str:
                if len(value) > MAX_ALIKE_CHARS or any(s in value for s in _UNSAFE):
                    return None
            elif kind is int:
                if value.bit_length() > 64:
                    return None
            elif kind not in _PLAIN:
                return None
        return tuple(values), tuple(map(type, values.values()))

    def renders_alike(self, values: Mapping[str, Any]) -> bool:
        """Whether an entry of this shape has rendered without error already."""
        shape = self._shape(values)
        return shape is not None and shape in self._seen

    def rendered(self, values: Mapping[str, Any]) -> None:
        """Remember that an entry with these values rendered without error."""
        shape = self._shape(values)
        if shape is not None:
            self._seen.add(shape)
