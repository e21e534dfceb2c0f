"""Polyaxon's param references inside a DAG: ``ref: ops.NAME`` / ``ref: dag`` with ``value:
outputs.X`` (and the ``{{ ops.NAME... }}`` names a template reads), parsed and checked as
Polyaxon's ``ParamValueMixin.get_spec``, ``validate_ref`` and ``ParamSpec.validate_ref`` do.

Pure: no files, no runs. ``dag.py`` builds the DAG from these facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m

__all__ = [
    "GLOBALS_KEYS",
    "ParamRef",
    "are_compatible",
    "ops_in_template",
    "parse_param_ref",
    "ref_value_path",
]

#: Polyaxon's ``PARAM_REGEX``: a value written ``{{ outputs.x }}`` is read as ``outputs.x``.
_PARAM_REGEX = re.compile(r"{{\s*(.+)\s*}}")
#: Sections a one-part value may name (``value: outputs`` is the whole dict).
_CONTEXTS = ("inputs", "outputs", "io", "artifacts")
#: Sections a two-part value may start with (``outputs.loss``).
_NESTED = ("inputs", "outputs", "artifacts", "globals")
#: Polyaxon's ``GLOBALS_CONTEXTS``: ``globals.X`` names a reference may read.
GLOBALS_KEYS = frozenset(
    {
        "artifacts_path",
        "cloning_kind",
        "compiled_at",
        "context_path",
        "created_at",
        "duration",
        "finished_at",
        "is_independent",
        "iteration",
        "name",
        "namespace",
        "original_uuid",
        "owner_name",
        "project_name",
        "project_unique_name",
        "project_uuid",
        "run_info",
        "schedule_at",
        "started_at",
        "status",
        "uuid",
    }
)
#: Polyaxon's ``types.COMPATIBLE_TYPES``, as it compares them: its second group holds the
#: class ``float``, not the name, so ``float`` and ``metric`` are compatible only with
#: themselves (kept as Polyaxon behaves).
_COMPATIBLE = (frozenset({"str", "path", "s3", "gcs", "wasb"}),)
#: ``ops.NAME`` or ``ops['NAME']`` inside a template.
_OPS_IN_TEMPLATE = re.compile(
    r"""\bops\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])"""
)


@dataclass(frozen=True)
class ParamRef:
    """A param that reads another entity: ``op`` is the upstream operation's name (None for
    ``ref: dag``), ``path`` the value's parts (``("outputs", "loss")``), ``template`` whether
    the value was written ``{{ ... }}`` (Polyaxon then skips the type check)."""

    op: str | None
    path: tuple[str, ...]
    template: bool
    text: str

    @property
    def searchable(self) -> str:
        """Polyaxon's ``searchable_ref``: the key its compile-time context is looked up by."""
        head = f"ops.{self.op}" if self.op is not None else "dag"
        return ".".join((head, *self.path))

    @property
    def placeholder(self) -> str:
        """What ``plan`` shows until the upstream value exists."""
        return f"<{self.searchable}>"


def ref_value_path(value: str) -> tuple[tuple[str, ...], bool]:
    """The dotted parts of a ref's value, without ``{{ }}`` (Polyaxon's ``parse_ref_value``)."""
    found = _PARAM_REGEX.search(value)
    inner = found.group(1).strip() if found else value
    return tuple(part.strip() for part in inner.split(".")), found is not None


def parse_param_ref(name: str, param: m.Param, where: str) -> ParamRef | None:
    """The reference a param makes (None for a literal), checked as Polyaxon checks it."""
    ref = param.ref
    if ref is None:
        return None
    value = param.value
    if not isinstance(value, str):
        raise SpecError(
            f"value must be of type string when a ref is provided, received {value!r} instead",
            field=f"{where}.value",
        )
    parts, template = ref_value_path(value)
    _check_value_parts(parts, value, name, ref, f"{where}.value")
    ref_parts = ref.split(".")
    if len(ref_parts) == 1 and ref_parts[0] == "dag":
        return ParamRef(None, parts, template, value)
    if len(ref_parts) == 2 and ref_parts[0] == "ops" and ref_parts[1]:
        return ParamRef(ref_parts[1], parts, template, value)
    if len(ref_parts) == 2 and ref_parts[0] == "runs":
        raise SpecError(
            f"could not use ref {ref!r} for param {name!r}: refs to runs outside this DAG are "
            "not supported locally (use ref: ops.NAME for an operation of the DAG)",
            field=f"{where}.ref",
        )
    raise SpecError(
        f"could not parse ref {ref!r} for param {name!r}: expected ops.NAME (an operation of "
        "this DAG) or dag (the DAG's own inputs)",
        field=f"{where}.ref",
    )


def _check_value_parts(parts: tuple[str, ...], value: str, name: str, ref: str, where: str) -> None:
    """Polyaxon's rules on a ref's value: ``outputs``, ``outputs.X``, ``artifacts.X.Y``..."""
    if len(parts) > 3:
        raise SpecError(f"could not parse value {value!r} for param {name!r}", field=where)
    if len(parts) == 1 and parts[0] not in _CONTEXTS:
        raise SpecError(
            f"received an invalid value {value!r} for param {name!r}; value must be one of "
            f"{', '.join(_CONTEXTS)} (or SECTION.NAME)",
            field=where,
        )
    if len(parts) == 1 and ref == "dag" and parts[0] == "outputs":
        raise SpecError(
            f"received an invalid value {value!r} for param {name!r}: you can not use outputs "
            "of the current dag",
            field=where,
        )
    if len(parts) == 2 and parts[0] not in _NESTED:
        raise SpecError(
            f"received an invalid value {value!r} for param {name!r}: {parts[0]!r} must be one "
            f"of {', '.join(_NESTED)}",
            field=where,
        )
    if len(parts) == 3 and parts[0] != "artifacts":
        raise SpecError(
            f"received an invalid value {value!r} for param {name!r}: {parts[0]!r} can only "
            "be 'artifacts' in a three-part value",
            field=where,
        )


def are_compatible(type1: str | None, type2: str | None) -> bool:
    """Polyaxon's ``types.are_compatible`` on two IO type names."""
    if type1 == type2:
        return True
    return any(type1 in group and type2 in group for group in _COMPATIBLE)


def ops_in_template(value: Any) -> set[str]:
    """The operations a template string names (``{{ ops.train.outputs.loss }}``,
    ``ops['pre-process']``); nothing for anything that is not a template."""
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return set()
    return {a or b for a, b in _OPS_IN_TEMPLATE.findall(value)}
