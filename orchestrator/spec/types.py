"""IO types and value coercion, as Polyaxon does them (``POLYAXONFILE.md`` §2).

Polyaxon JSON-parses a string given to a "loadable" type (int, float, dict, list, ...) and then
applies pydantic's lax validation; ``str`` inputs turn numbers, lists and dicts into their JSON
text. We reproduce that here without pydantic: :func:`parse_type` reads a type expression
(``int``, ``List[float]``, ``Optional[Dict[str, int]]``, ``path``...) and :func:`coerce` turns a
value into it or raises :class:`CoercionError` saying what was expected.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["CoercionError", "IOType", "coerce", "parse_type"]


class CoercionError(ValueError):
    """A value does not fit a type; ``str()`` is ``expected T, got V``."""


@dataclass(frozen=True)
class IOType:
    """A parsed type expression: ``name`` plus type arguments for list/dict/optional."""

    name: str
    args: tuple[IOType, ...] = ()

    def __str__(self) -> str:
        if self.name == "optional":
            return f"Optional[{self.args[0]}]"
        if self.args:
            inner = ", ".join(str(a) for a in self.args)
            return f"{self.name.capitalize()}[{inner}]"
        return self.name

    @property
    def is_numeric(self) -> bool:
        return self.base.name in {"int", "float"}

    @property
    def base(self) -> IOType:
        """The type without ``Optional``."""
        return self.args[0].base if self.name == "optional" else self

    @property
    def is_list(self) -> bool:
        return self.base.name == "list"


#: Polyaxon's named types mapped onto the shape we check.
_ALIASES = {
    "metric": "float",
    "metadata": "dict",
    "path": "str",
    "uri": "str",
    "auth": "str",
    "image": "str",
    "gcs": "str",
    "s3": "str",
    "wasb": "str",
    "email": "email",
    "uuid": "uuid",
    "date": "date",
    "datetime": "datetime",
    "timedelta": "timedelta",
    "any": "any",
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "dict": "dict",
    "list": "list",
    "file": "object",
    "tensorboard": "object",
    "dockerfile": "object",
    "git": "object",
    "event": "object",
    "artifacts": "object",
}
_GENERICS = {
    "list": "list",
    "List": "list",
    "dict": "dict",
    "Dict": "dict",
    "Optional": "optional",
    "Union": "union",
}
_TOKEN_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*|\[|\]|,)")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
#: Types whose string values are JSON-parsed first (clipped's "loadable" types).
_LOADABLE = {"int", "float", "dict", "list", "object", "optional", "union"}


def parse_type(expr: str | None) -> IOType:
    """Parse a type expression; ``None`` means ``any``. Raise ValueError when unknown."""
    if expr is None:
        return IOType("any")
    tokens = _TOKEN_RE.findall(expr)
    if "".join(tokens) != re.sub(r"\s+", "", expr):
        raise ValueError(f"cannot read type {expr!r}")
    pos = 0

    def parse() -> IOType:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"cannot read type {expr!r}")
        word = tokens[pos].removeprefix("typing.")
        pos += 1
        if pos < len(tokens) and tokens[pos] == "[":
            pos += 1
            args = [parse()]
            while tokens[pos] == ",":
                pos += 1
                args.append(parse())
            if tokens[pos] != "]":
                raise ValueError(f"cannot read type {expr!r}")
            pos += 1
            generic = _GENERICS.get(word)
            if generic is None:
                raise ValueError(f"unsupported type {word!r} in {expr!r}")
            if generic == "list" and len(args) == 1:
                return IOType("list", (args[0],))
            if generic == "dict" and len(args) == 2:
                return IOType("dict", (args[0], args[1]))
            if generic == "optional" and len(args) == 1:
                return IOType("optional", (args[0],))
            if generic == "union":
                members = tuple(a for a in args if a.name != "none")
                base = IOType("union", members) if len(members) > 1 else members[0]
                return IOType("optional", (base,)) if len(members) < len(args) else base
            raise ValueError(f"wrong number of arguments in {expr!r}")
        if word in {"None", "NoneType"}:
            return IOType("none")
        name = _ALIASES.get(word) or _ALIASES.get(word.lower())
        if name is None or (word != word.lower() and word not in {"List", "Dict", "Any"}):
            if word in {"List", "Dict"}:
                return IOType(word.lower())
            if word == "Any":
                return IOType("any")
            raise ValueError(f"unknown type {word!r}")
        return IOType(name)

    try:
        result = parse()
    except IndexError:
        raise ValueError(f"cannot read type {expr!r}") from None
    if pos != len(tokens):
        raise ValueError(f"cannot read type {expr!r}")
    return result


def _fail(tp: IOType, value: Any) -> CoercionError:
    shown = json.dumps(value) if isinstance(value, str) else repr(value)
    if isinstance(value, bool):
        shown = "true" if value else "false"
    return CoercionError(f"expected {tp}, got {shown}")


def coerce(value: Any, tp: IOType) -> Any:
    """Return ``value`` converted to ``tp`` the way Polyaxon's lax validation does."""
    if value is None:
        if tp.name in {"optional", "any", "none"}:
            return None
        raise _fail(tp, value)
    name = tp.name
    if isinstance(value, str) and name in _LOADABLE:
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError:
            if name in {"dict", "object", "list"}:
                raise _fail(tp, value) from None
    try:
        converter = _CONVERTERS[name]
    except KeyError:
        raise _fail(tp, value) from None
    return converter(value, tp)


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON, and Polyaxon refuses them as numbers."""
    raise ValueError(f"{name} is not a JSON number")


def _json_number(text: str) -> int | float | None:
    """``text`` as a JSON number (Polyaxon reads a number given as text, a ``-P`` value
    included, as JSON: ``010``, ``.5``, ``+1``, ``1_000`` and ``nan`` are not numbers)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _not_json_number(tp: IOType, value: Any) -> CoercionError:
    """The refusal of a text that Python would read as a number but JSON does not (``010``,
    ``.5``, ``+1``, ``nan``): say why, or "expected int, got "010"" reads as a bug."""
    error = _fail(tp, value)
    if not isinstance(value, str):
        return error
    try:
        float(value)
    except ValueError:
        return error
    return CoercionError(f"{error}: a number given as text is read as JSON, as Polyaxon does")


def _to_any(value: Any, tp: IOType) -> Any:
    return value


def _to_int(value: Any, tp: IOType) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    number = _json_number(value) if isinstance(value, str) else None
    if number is not None and float(number).is_integer():
        return int(number)
    raise _not_json_number(tp, value)


def _to_float(value: Any, tp: IOType) -> float:
    if isinstance(value, int | float):  # YAML's .nan and .inf are floats, as Polyaxon keeps them
        return float(value)
    number = _json_number(value) if isinstance(value, str) else None
    if number is not None:
        return float(number)
    raise _not_json_number(tp, value)


def _to_bool(value: Any, tp: IOType) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _fail(tp, value)


def _to_str(value: Any, tp: IOType) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | dict | list | tuple | set):
        # clipped's GenericStr: numbers, lists and dicts become their JSON text.
        return json.dumps(
            list(value) if isinstance(value, tuple | set) else value,
            separators=(",", ":"),
            default=str,
        )
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value)


def _to_list(value: Any, tp: IOType) -> list[Any]:
    if isinstance(value, tuple | set):
        value = list(value)
    if not isinstance(value, list):
        raise _fail(tp, value)
    if not tp.args:
        return value
    item = tp.args[0]
    out = []
    for index, element in enumerate(value):
        try:
            out.append(coerce(element, item))
        except CoercionError as exc:
            raise CoercionError(f"item {index}: {exc}") from None
    return out


def _to_dict(value: Any, tp: IOType) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _fail(tp, value)
    if not tp.args:
        return value
    key_type, value_type = tp.args
    out = {}
    for key, element in value.items():
        try:
            out[coerce(key, key_type)] = coerce(element, value_type)
        except CoercionError as exc:
            raise CoercionError(f"key {key!r}: {exc}") from None
    return out


def _to_object(value: Any, tp: IOType) -> Any:
    if isinstance(value, dict | str):
        return value
    raise _fail(tp, value)


def _to_optional(value: Any, tp: IOType) -> Any:
    return coerce(value, tp.args[0])


def _to_union(value: Any, tp: IOType) -> Any:
    for member in tp.args:
        try:
            return coerce(value, member)
        except CoercionError:
            continue
    raise _fail(tp, value)


def _to_date(value: Any, tp: IOType) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _fail(tp, value)


def _to_datetime(value: Any, tp: IOType) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _fail(tp, value)


def _to_timedelta(value: Any, tp: IOType) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:(\d+)\s+days?,\s*)?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)\s*", value)
        if match:
            days, hours, minutes, seconds = match.groups()
            return dt.timedelta(
                days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds)
            )
        try:
            return dt.timedelta(seconds=float(value))
        except ValueError:
            pass
    raise _fail(tp, value)


def _to_uuid(value: Any, tp: IOType) -> str:
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        raise _fail(tp, value) from None


def _to_email(value: Any, tp: IOType) -> str:
    if isinstance(value, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value.strip()):
        return value.strip()
    raise _fail(tp, value)


_CONVERTERS = {
    "any": _to_any,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "str": _to_str,
    "list": _to_list,
    "dict": _to_dict,
    "object": _to_object,
    "optional": _to_optional,
    "union": _to_union,
    "date": _to_date,
    "datetime": _to_datetime,
    "timedelta": _to_timedelta,
    "uuid": _to_uuid,
    "email": _to_email,
}
