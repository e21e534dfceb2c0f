"""Read YAML with the safe loader and hard limits, so hostile files fail fast and small.

The document is built straight from the parser's event stream, without PyYAML's node graph
(which costs about 370 bytes a node: 300 MB for a 4 MB file). Every node is counted as its
event arrives, an alias counting as the whole subtree it repeats, so a "billion laughs" alias
bomb or a flat list of two million items is refused the moment the count passes
:data:`MAX_NODES`, after work and memory proportional to that limit, never to the expansion.
Nesting is tracked the same way (:data:`MAX_DEPTH`) without recursion. Scalars are resolved and
constructed by PyYAML's own ``SafeLoader`` rules, so values are exactly what ``yaml.safe_load``
gives: merge keys, tags, timestamps and error messages included.
"""

from __future__ import annotations

import gc
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import (
    AliasEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from orchestrator.exceptions import SpecError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "load_yaml"]

#: Largest polyaxonfile we read, in bytes (files, urlRef bodies and submitted specs alike).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Most nodes the document may have once every alias is expanded.
MAX_NODES = 1_000_000
#: Deepest nesting of mappings and sequences.
MAX_DEPTH = 64

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SEQ, _MAP, _MERGE, _VALUE = (f"{_TAG}{n}" for n in ("seq", "map", "merge", "value"))
_STR, _INT = f"{_TAG}str", f"{_TAG}int"
_SET, _OMAP, _PAIRS = f"{_TAG}set", f"{_TAG}omap", f"{_TAG}pairs"
#: Tags whose SafeLoader constructor is a plain function of a scalar.
_MEMO_ENTRIES, _MEMO_CHARS = 65_536, 64
_SCALAR_TAGS = frozenset(
    f"{_TAG}{n}" for n in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)


class _Open:
    """A sequence or mapping whose end event has not come yet."""

    __slots__ = ("event", "height", "items", "size", "tag", "tags")

    def __init__(self, event: Any, tag: str) -> None:
        self.event = event
        self.tag = tag
        #: Children in order: items, or keys and values alternating.
        self.items: list[Any] = []
        #: Tags of the children (a mapping needs them for ``<<`` and ``=`` keys).
        self.tags: list[str] = []
        self.size = 1
        self.height = 0


@dataclass(frozen=True)
class _Anchored:
    value: Any
    tag: str
    size: int
    height: int
    mark: Any


class _Builder:
    """Builds one document from events, counting nodes and depth as it goes."""

    def __init__(self, loader: Any, source: str) -> None:
        self.loader = loader  # PyYAML's loaders are untyped
        self.source = source
        self.nodes = 0
        self.stack: list[_Open] = []
        self.anchors: dict[str, _Anchored | None] = {}  # None: still open (an alias is a loop)
        #: Scalars already built, by (tag, implicit, text): a big file repeats its keys and
        #: small values, and a file needs short scalars to exceed MAX_NODES at all.
        self.memo: dict[tuple[Any, Any, str], tuple[Any, str]] = {}

    def _count(self, size: int, height: int) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise SpecError(
                f"YAML document expands to more than {MAX_NODES:,} nodes "
                "(alias bomb or oversized list?); refusing to read it",
                file=self.source,
            )
        if len(self.stack) + height > MAX_DEPTH:
            raise SpecError(f"YAML nesting deeper than {MAX_DEPTH} levels", file=self.source)

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(StreamEndEvent):
            return None
        start = loader.get_event()  # document start
        value = self._root()
        loader.get_event()  # document end
        if not loader.check_event(StreamEndEvent):
            event = loader.get_event()
            raise ComposerError(
                "expected a single document in the stream",
                start.end_mark,
                "but found another document",
                event.start_mark,
            )
        return value

    def _root(self) -> Any:
        """Build the root node; the loop is flat (no recursion) and the scalar path is short,
        since a big file is mostly scalars."""
        loader, stack, memo = self.loader, self.stack, self.memo
        get_event = loader.get_event
        while True:
            event = get_event()
            if type(event) is ScalarEvent:
                self.nodes += 1
                if self.nodes > MAX_NODES or len(stack) > MAX_DEPTH:
                    self._count(0, 0)  # raises
                text = event.value
                key = (event.tag, event.implicit, text)
                known = memo.get(key)
                if known is not None:
                    pass
                elif _plain_decimal(event.tag, event.implicit, text):
                    known = (int(text), _INT)  # what the resolver and int constructor give
                else:
                    known = self._scalar(event)
                    if len(memo) < _MEMO_ENTRIES and len(text) <= _MEMO_CHARS:
                        memo[key] = known
                if event.anchor is not None:
                    self._anchor(event, known[0], known[1], 1, 0)
                if not stack:
                    return known[0]
                top = stack[-1]
                top.items.append(known[0])
                top.tags.append(known[1])
                top.size += 1
                if top.height == 0:
                    top.height = 1
                continue
            if isinstance(event, AliasEvent):
                value, tag, size, height = self._alias(event)
            elif isinstance(event, SequenceStartEvent | MappingStartEvent):
                self._count(1, 0)
                given: str | None = event.tag
                if given is None or given == "!":  # SafeLoader has no path resolvers
                    given = _SEQ if isinstance(event, SequenceStartEvent) else _MAP
                tag = given
                if event.anchor is not None:
                    self._check_new_anchor(event)
                    self.anchors[event.anchor] = None
                stack.append(_Open(event, tag))
                continue
            else:  # sequence or mapping end
                done = stack.pop()
                tag, size, height = done.tag, done.size, done.height
                items = done.items
                start = done.event
                if (
                    tag == _MAP
                    and type(start) is MappingStartEvent
                    and start.anchor is None
                    and _MERGE not in done.tags
                ):
                    try:  # the usual mapping: plain keys, no merge, no anchor
                        value = dict(zip(items[::2], items[1::2], strict=True))
                    except TypeError:  # an unhashable key: reported with its mark
                        value = self._collection(done, event)
                else:
                    value = self._collection(done, event)
                    self._anchor(done.event, value, tag, size, height)
            if not stack:
                return value
            top = stack[-1]
            top.items.append(value)
            top.tags.append(tag)
            top.size += size
            top.height = max(top.height, height + 1)

    def _alias(self, event: Any) -> tuple[Any, str, int, int]:
        if event.anchor not in self.anchors:
            raise ComposerError(
                None, None, f"found undefined alias {event.anchor!r}", event.start_mark
            )
        anchored = self.anchors[event.anchor]
        if anchored is None:
            raise SpecError("recursive YAML alias", file=self.source)
        self._count(anchored.size, anchored.height)
        return anchored.value, anchored.tag, anchored.size, anchored.height

    def _check_new_anchor(self, event: Any) -> None:
        if event.anchor in self.anchors:
            first = self.anchors[event.anchor]
            raise ComposerError(
                "found duplicate anchor; first occurrence",
                first.mark if first is not None else None,
                "second occurrence",
                event.start_mark,
            )

    def _anchor(self, event: Any, value: Any, tag: str, size: int, height: int) -> None:
        if event.anchor is None:
            return
        if isinstance(event, ScalarEvent):
            self._check_new_anchor(event)
        self.anchors[event.anchor] = _Anchored(value, tag, size, height, event.start_mark)

    def _scalar(self, event: Any) -> tuple[Any, str]:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(ScalarNode, event.value, event.implicit)
        top = self.stack[-1] if self.stack else None
        is_key = top is not None and top.tag in (_MAP, _SET) and len(top.items) % 2 == 0
        if tag in (_MERGE, _VALUE) and is_key:  # a key: "<<" merges, "=" is a string
            return event.value, tag
        text = event.value
        if tag == _STR:
            return text, tag
        if tag == _INT and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
            return int(text), tag  # plain decimal: what construct_yaml_int gives, 5x faster
        node = ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
        if tag in _SCALAR_TAGS:
            return self.loader.yaml_constructors[tag](self.loader, node), tag
        # Anything else (a collection tag on a scalar, an unknown tag) raises PyYAML's error.
        return self.loader.construct_object(node, deep=True), tag

    def _collection(self, done: _Open, end: Any) -> Any:
        marks: tuple[Any, Any] = (done.event.start_mark, end.end_mark)
        if isinstance(done.event, SequenceStartEvent):
            if done.tag == _SEQ:
                return done.items
            if done.tag in (_OMAP, _PAIRS):
                return self._pairs(done, end)
            node: Any = SequenceNode(done.tag, [], *marks)
        else:
            if done.tag == _MAP:
                return self._mapping(done)
            if done.tag == _SET:
                return set(self._mapping(done))
            node = MappingNode(done.tag, [], *marks)
        return self.loader.construct_object(node, deep=True)  # raises PyYAML's own error

    def _mapping(self, done: _Open) -> dict[Any, Any]:
        """A mapping, with ``<<`` merge keys applied as SafeLoader's ``flatten_mapping`` does:
        merged keys first (the first mapping to give a key wins, as the YAML merge spec says),
        then the mapping's own keys, which override them."""
        items, tags = done.items, done.tags
        if _MERGE not in tags:
            try:
                return dict(zip(items[::2], items[1::2], strict=True))
            except TypeError:
                pass  # an unhashable key: found and reported below
        own: list[tuple[Any, Any]] = []
        merged: dict[Any, Any] = {}
        for i in range(0, len(items), 2):
            key, value = items[i], items[i + 1]
            if tags[i] == _MERGE:
                sources = [value] if tags[i + 1] != _SEQ else value
                if tags[i + 1] not in (_MAP, _SEQ) or not all(isinstance(s, dict) for s in sources):
                    raise ConstructorError(
                        "while constructing a mapping",
                        done.event.start_mark,
                        "expected a mapping or list of mappings for merging",
                        done.event.start_mark,
                    )
                for source in sources:
                    for merged_key, merged_value in source.items():
                        merged.setdefault(merged_key, merged_value)
                continue
            if not isinstance(key, Hashable):
                raise ConstructorError(
                    "while constructing a mapping",
                    done.event.start_mark,
                    "found unhashable key",
                    done.event.start_mark,
                )
            own.append((key, value))
        if not merged:
            return dict(own)
        merged.update(own)
        return merged

    def _pairs(self, done: _Open, end: Any) -> list[tuple[Any, Any]]:
        pairs: list[tuple[Any, Any]] = []
        for item in done.items:
            if not isinstance(item, dict) or len(item) != 1:
                raise ConstructorError(
                    f"while constructing an ordered map ({done.tag.removeprefix(_TAG)})",
                    done.event.start_mark,
                    "expected a mapping of length 1",
                    end.start_mark,
                )
            pairs.extend(item.items())
        return pairs


def _plain_decimal(tag: str | None, implicit: tuple[bool, bool], text: str) -> bool:
    """A plain (unquoted, untagged) scalar of ASCII digits without a leading zero: SafeLoader
    resolves it to an int (no other implicit resolver matches digits alone) and constructs
    ``int(text)``; most scalars of a big mapping are such."""
    return (
        tag is None
        and implicit[0]
        and text.isdigit()
        and text.isascii()
        and (text[0] != "0" or len(text) == 1)
    )


@contextmanager
def _no_gc() -> Iterator[None]:
    """Building a million small objects with the cyclic GC on costs 4x the time (every
    collection walks all of them); nothing built here can form a cycle."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml(text: str | bytes, source: str = "<string>") -> Any:
    """Parse one YAML document safely; ``source`` names it in errors."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {size:,} bytes, larger than the {MAX_FILE_BYTES:,}-byte limit", file=source
        )
    loader = _Loader(text)
    try:
        with _no_gc():
            return _Builder(loader, source).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {where}{problem}", file=source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", file=source) from None
    except RecursionError:
        raise SpecError("YAML nesting too deep", file=source) from None
    finally:
        loader.dispose()
