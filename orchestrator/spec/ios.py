"""A component's inputs and outputs: declarations checked, values coerced to their types.

:func:`resolve_ios` reads the ``inputs`` and ``outputs`` sections once: names unique and not
reserved, type expressions parsed (``isList`` wraps the type), ``isFlag`` only on ``bool``,
``value`` and ``isOptional`` consistent, defaults checked (and kept as written, as Polyaxon
keeps them). :func:`typed_value` then turns any
value given to an IO (param, ``-P``, matrix suggestion, rendered template) into the IO's type
and checks its ``validation`` rules. A value written as a template is typed only once rendered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.types import CoercionError, IOType, coerce, parse_type
from orchestrator.spec.validation import check_rules

__all__ = ["RESERVED_NAMES", "ResolvedIO", "is_template", "resolve_ios", "typed_value"]

#: Names an IO may not take: ``globals`` and ``params`` are keys of the template context, and
#: Polyaxon reserves ``connections`` too.
RESERVED_NAMES = frozenset({"globals", "params", "connections"})


@dataclass(frozen=True)
class ResolvedIO:
    """An input or output with its type parsed and its default coerced."""

    io: m.IO
    type: IOType
    is_output: bool
    required: bool
    #: The default as written (:func:`as_written`); absence is ``has_default=False``.
    default: Any
    has_default: bool

    @property
    def name(self) -> str:
        return self.io.name


def typed_value(value: Any, io: ResolvedIO, where: str) -> Any:
    """Coerce ``value`` to the IO's type and check its validation rules."""
    try:
        typed = coerce(value, io.type)
    except CoercionError as exc:
        raise SpecError(str(exc), field=where) from None
    if io.type.name == "optional" and typed is None:
        return None
    if typed is None and not io.is_output and io.required:
        raise SpecError(f"expected {io.type}, got null", field=where)
    rules = io.io.validation
    if rules is None and io.io.options is not None:
        rules = m.Validation(options=io.io.options)
    problem = check_rules(typed, rules)
    if problem:
        raise SpecError(problem, field=where)
    return typed


#: Types whose default given as text Polyaxon reads as JSON (``"4"`` is 4, ``"[1, 2]"`` a list).
_READ_AS_JSON = frozenset({"int", "float", "list", "dict", "object", "any"})


def as_written(default: Any, tp: IOType) -> Any:
    """A declared default as Polyaxon keeps it: checked against the type but not converted
    to it (``value: 3`` for a ``float`` stays 3, renders ``3``; ``"yes"`` for a ``bool`` stays
    ``"yes"``), except that text for a number, list, dict or ``any`` is read as JSON."""
    if isinstance(default, str) and tp.base.name in _READ_AS_JSON:
        try:
            return json.loads(default)
        except ValueError:
            return default
    return default


def is_template(value: Any) -> bool:
    """A string holding Jinja markup: typed after rendering, not before."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def resolve_ios(component: m.Component) -> list[ResolvedIO]:
    """The component's inputs then outputs, checked and typed; errors name the field."""
    out: list[ResolvedIO] = []
    seen: set[str] = set()
    for section, ios in (("inputs", component.inputs), ("outputs", component.outputs)):
        for index, io in enumerate(ios or []):
            where = f"{section}[{index}]"
            if io.name in RESERVED_NAMES:
                raise SpecError(
                    f"{io.name!r} is reserved; choose another name", field=f"{where}.name"
                )
            if io.name in seen:
                raise SpecError(f"duplicate name {io.name!r}", field=f"{where}.name")
            seen.add(io.name)
            try:
                tp = parse_type(io.type)
            except ValueError as exc:
                raise SpecError(str(exc), field=f"{where}.type") from None
            if io.is_list and tp.name != "list":
                tp = IOType("list", (tp,))
            if io.is_flag and tp.base.name != "bool":
                raise SpecError(f"isFlag needs type bool, got {io.type}", field=f"{where}.isFlag")
            has_default = io.value is not msgspec.UNSET
            if has_default and io.is_optional is False:
                raise SpecError(
                    "a value makes the IO optional; remove isOptional: false or the value",
                    field=f"{where}.isOptional",
                )
            optional = has_default or bool(io.is_optional)
            if io.is_optional and not has_default:
                has_default = True
            resolved = ResolvedIO(io, tp, section == "outputs", not optional, None, has_default)
            default = io.value if io.value is not msgspec.UNSET else None
            if has_default and default is not None and not is_template(default):
                typed_value(default, resolved, f"{where}.value")  # it must fit the type
                default = as_written(default, tp)
            out.append(ResolvedIO(io, tp, section == "outputs", not optional, default, has_default))
    return out
