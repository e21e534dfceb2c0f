"""Turn plain YAML data into the Structs of ``models.py`` with precise, path-named errors.

msgspec validates types, but its error paths lose dictionary keys and it knows only one
spelling of each key. This walker goes through the data alongside the type tree: it accepts
snake_case as well as camelCase keys, rejects unknown keys naming the expected ones, picks the
member of a ``kind``-tagged union by its tag, and converts each Struct on its own so that every
error carries the full field path (``matrix.params.lr.kind``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi

from orchestrator.exceptions import SpecError

__all__ = ["decode", "join_path", "to_camel"]

_CAMEL_RE = re.compile(r"_([a-z0-9])")
_MSGSPEC_PATH_RE = re.compile(r" - at (`key` in )?`\$(.*)`$")
_EXPECTED_RE = re.compile(r"^Expected `(.+)`, got `(.+)`$")


def to_camel(name: str) -> str:
    """``num_runs`` -> ``numRuns``; camelCase names are returned unchanged."""
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def join_path(prefix: str, key: str | int) -> str:
    """Extend a field path: ``join_path("matrix", "values")``, ``join_path("values", 1)``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


@cache
def _info(tp: Any) -> mi.Type:
    return mi.type_info(tp)


def decode(data: Any, tp: Any, path: str = "") -> Any:
    """Convert ``data`` to ``tp``; raise :class:`SpecError` naming the field on failure."""
    return _walk(data, _info(tp), path)


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.StructType):
        return "mapping"
    if isinstance(t, mi.ListType):
        return "list"
    if isinstance(t, mi.DictType):
        return "mapping"
    if isinstance(t, mi.LiteralType):
        return " | ".join(repr(v) for v in t.values)
    return type(t).__name__.removesuffix("Type").lower()


def _untyped(t: mi.Type) -> bool:
    """Whether ``t`` is ``Any``, or lists and dicts of it: nothing below it to convert (a
    mapping's 263,000 entries are copied, not walked key by key)."""
    if isinstance(t, mi.AnyType):
        return True
    if isinstance(t, mi.ListType):
        return _untyped(t.item_type)
    if isinstance(t, mi.DictType):
        return _untyped(t.value_type)
    return False


def _copy(value: Any, t: mi.Type) -> Any:
    """What :func:`_walk` returns for an :func:`_untyped` type: the lists and dicts of ``t``
    copied, everything else as it is."""
    if isinstance(t, mi.ListType) and isinstance(value, list):
        item = t.item_type
        if isinstance(item, mi.AnyType):
            return list(value)
        return [_copy(v, item) for v in value]
    if isinstance(t, mi.DictType) and isinstance(value, dict):
        if isinstance(t.value_type, mi.AnyType):
            return dict(value)
        return {k: _copy(v, t.value_type) for k, v in value.items()}
    return value


def _walk(value: Any, t: mi.Type, path: str) -> Any:
    if _untyped(t):
        return _copy(value, t)
    if isinstance(t, mi.StructType):
        return _walk_struct(value, t, path)
    if isinstance(t, mi.UnionType):
        return _walk_union(value, t, path)
    if isinstance(t, mi.ListType) and isinstance(value, list):
        return [_walk(v, t.item_type, join_path(path, i)) for i, v in enumerate(value)]
    if isinstance(t, mi.DictType) and isinstance(value, dict):
        return {k: _walk(v, t.value_type, join_path(path, str(k))) for k, v in value.items()}
    return value


def _walk_union(value: Any, t: mi.UnionType, path: str) -> Any:
    options = [o for o in t.types if not isinstance(o, mi.NoneType)]
    if value is None:
        return None
    if isinstance(value, dict):
        structs = [o for o in options if isinstance(o, mi.StructType)]
        if len(structs) == 1:
            return _walk_struct(value, structs[0], path)
        if structs:
            return _walk_tagged(value, structs, path)
        dicts = [o for o in options if isinstance(o, mi.DictType)]
        if dicts:
            return _walk(value, dicts[0], path)
    if isinstance(value, list):
        lists = [o for o in options if isinstance(o, mi.ListType)]
        if lists:
            return _walk(value, lists[0], path)
    return value


def _walk_tagged(value: dict[Any, Any], structs: list[mi.StructType], path: str) -> Any:
    by_tag = {s.tag: s for s in structs if s.tag is not None}
    field = structs[0].tag_field or "kind"
    tag = value.get(field)
    kinds = ", ".join(sorted(str(k) for k in by_tag))
    where = join_path(path, field)
    if tag is None:
        raise SpecError(f"required key missing; expected one of: {kinds}", field=where)
    chosen = by_tag.get(tag)
    if chosen is None:
        raise SpecError(f"expected one of: {kinds}; got {tag!r}", field=where)
    return _walk_struct(value, chosen, path)


def _is_short_form(value: Any, t: mi.StructType) -> bool:
    """A bare value (or a dict with none of the Struct's keys) standing for ``{short: value}``."""
    if not getattr(t.cls, "__short_form__", None):
        return False
    if not isinstance(value, dict):
        return True
    names = {f.encode_name for f in t.fields} | {f.name for f in t.fields}
    return bool(value) and not (names & set(map(str, value)))


def _walk_struct(value: Any, t: mi.StructType, path: str) -> Any:
    if _is_short_form(value, t):
        value = {getattr(t.cls, "__short_form__"): value}  # noqa: B009 - mypy cannot see it
    if not isinstance(value, dict):
        shown = type(value).__name__ if value is not None else "null"
        raise SpecError(f"expected a mapping, got {shown}", field=path or None)
    fields = {f.encode_name: f for f in t.fields}
    out: dict[str, Any] = {}
    for raw_key, raw_value in value.items():
        key = raw_key if isinstance(raw_key, str) else str(raw_key)
        if key == t.tag_field:
            out[key] = raw_value
            continue
        name = key if key in fields else to_camel(key)
        field = fields.get(name)
        if field is None:
            expected = ", ".join(sorted(fields))
            raise SpecError(f"unknown key; expected one of: {expected}", field=join_path(path, key))
        if name in out:
            raise SpecError(
                f"given twice (as {name!r} and in snake_case)", field=join_path(path, name)
            )
        out[name] = _walk(raw_value, field.type, join_path(path, name))
    try:
        return msgspec.convert(out, t.cls, strict=False)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), path) from None


def _translate(message: str, path: str) -> SpecError:
    """Rewrite a msgspec message (``Expected `int`, got `str` - at `$.a[0]```) as ours."""
    match = _MSGSPEC_PATH_RE.search(message)
    inner = ""
    if match:
        inner = match.group(2)
        message = message[: match.start()]
        if match.group(1):
            message = message.replace("Expected `str`", "Expected `str` keys")
    full = path + inner if inner.startswith("[") or not path else f"{path}{inner}"
    full = full.lstrip(".")
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        return SpecError("required key missing", field=join_path(full, missing.group(1)))
    expected = _EXPECTED_RE.match(message)
    if expected:
        want = _plain(expected.group(1).replace(" | null", ""))
        got = _plain(expected.group(2))
        return SpecError(f"expected {want}, got {got}", field=full or None)
    detail = message[0].lower() + message[1:] if message else "invalid value"
    return SpecError(_plain(detail), field=full or None)


def _plain(text: str) -> str:
    """msgspec speaks JSON (object, array); our users write YAML (mapping, list)."""
    return text.replace("`", "").replace("object", "mapping").replace("array", "list")
