"""Polyaxon's query language (PQL) for ``joins[].query`` and ``joins[].sort``, as far as local
runs have the fields.

A query is conditions joined by ``,`` (or ``AND``), each ``field:operation``: a value
(``status:succeeded``), a negation (``~``), a comparison (``<``, ``<=``, ``>``, ``>=``), a set
(``a|b``), a date range (``a .. b``), ``nil``, or a search (``%text%``, ``text%``, ``%text``);
which of them a field takes is Polyaxon's (its run query manager's parser and condition per
field). A sort is fields joined by ``,``, ``-`` for descending. Parsed once, at plan time, into
:class:`Condition` values the store turns into SQL (``store/join_query.py``); a bad query is a
one-line SpecError naming the join's field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m

__all__ = [
    "GLOBALS",
    "Condition",
    "JoinSource",
    "check_join",
    "join_source",
    "parse_query",
    "parse_sort",
    "query_fields",
    "sort_fields",
]


@dataclass(frozen=True)
class Condition:
    """One ``field:operation`` of a query.

    ``field`` is canonical (``params.lr`` and ``in.lr`` are ``inputs.lr``, ``id`` is ``uuid``);
    ``op`` is ``=``, ``<``, ``<=``, ``>``, ``>=``, ``|`` (value in a list), ``..`` (a date range,
    both ends included), ``nil`` (no value), ``%%`` (contains), ``_%`` (starts with) or ``%_``
    (ends with). A date's ``=`` holds ``(start, end)`` POSIX seconds (the day or minute written,
    end excluded); other date values are POSIX seconds (UTC, as Polyaxon's server reads them).
    A negated comparison is already turned around (``~<1`` is ``>=1``), as Polyaxon does; any
    other negation keeps ``negated`` (and then matches runs without the value, as Polyaxon's
    ``exclude`` does)."""

    field: str
    op: str
    value: Any
    negated: bool = False


# --------------------------------------------------------------------------- fields
#: What each kind of condition accepts (Polyaxon's ``*Condition`` classes).
_OPS = {
    "value": frozenset({"=", "|", "nil"}),
    "search": frozenset({"=", "|", "nil", "%%", "_%", "%_"}),
    "comparison": frozenset({"=", "|", "nil", "<", "<=", ">", ">="}),
    "datetime": frozenset({"=", "nil", "<", "<=", ">", ">=", ".."}),
    "keys": frozenset({"=", "|", "nil"}),
}

#: Fields without a suffix: canonical name -> (parser, condition kind).
_PLAIN: dict[str, tuple[str, str]] = {
    "uuid": ("search", "search"),
    "name": ("search", "search"),
    "description": ("search", "search"),
    "status": ("value", "value"),
    "kind": ("value", "value"),
    "project": ("value", "value"),
    "pipeline": ("value", "value"),
    "tags": ("value", "keys"),
    "created_at": ("datetime", "datetime"),
    "updated_at": ("datetime", "datetime"),
    "started_at": ("datetime", "datetime"),
    "finished_at": ("datetime", "datetime"),
    "duration": ("scalar", "comparison"),
    "wait_time": ("scalar", "comparison"),
}
#: Fields with a suffix (``metrics.loss``): prefix -> (parser, condition kind).
_NESTED: dict[str, tuple[str, str]] = {
    "inputs": ("value", "comparison"),
    "outputs": ("value", "comparison"),
    "metrics": ("scalar", "comparison"),
    "hub": ("value", "value"),
    "project": ("value", "value"),
}
#: The only suffix these prefixes take.
_ONLY_SUFFIX = {"hub": "name", "project": "name"}
_ALIASES = {
    "id": "uuid",
    "uid": "uuid",
    "state": "status",
    "params": "inputs",
    "in": "inputs",
    "out": "outputs",
}
#: Polyaxon's run fields that local runs do not have.
_NOT_LOCAL = frozenset(
    {
        "user",
        "commit",
        "agent",
        "queue",
        "artifacts_store",
        "runtime",
        "namespace",
        "meta_info",
        "meta_values",
        "meta_flags",
        "live_state",
        "controller",
        "original",
        "cloning_kind",
        "artifacts",
        "connections",
        "upstream",
        "downstream",
        "component_state",
        "pending",
        "cost",
        "cpu",
        "memory",
        "gpu",
        "custom",
        "schedule_at",
        "backend",
        "framework",
        "teams",
        "mine",
        "is_managed",
        "managed_by",
        "in_artifact_kind",
        "out_artifact_kind",
    }
)
#: Fields a sort may name (Polyaxon's ordering fields that local runs have).
_SORTABLE = frozenset(
    {
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "name",
        "kind",
        "uuid",
        "duration",
        "wait_time",
        "status",
    }
)
_SORTABLE_NESTED = frozenset({"inputs", "outputs", "metrics"})

_FIELD_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)?\Z")
_AND_RE = re.compile(r"\s+AND\s+", re.IGNORECASE)
_OR_RE = re.compile(r"\s(OR|\|)\s+(\(|[a-zA-Z_][a-zA-Z0-9_.]*\s*:)", re.IGNORECASE)
_EXAMPLE = "e.g. 'metrics.loss:<0.1, status:succeeded'"


def query_fields() -> list[str]:
    """The fields a query may use, for messages and docs."""
    return sorted(_PLAIN) + [f"{p}.{_ONLY_SUFFIX.get(p, 'NAME')}" for p in sorted(_NESTED)]


def sort_fields() -> list[str]:
    """The fields a sort may use, for messages and docs."""
    return sorted(_SORTABLE) + [f"{p}.NAME" for p in sorted(_SORTABLE_NESTED)]


def _canonical(name: str, where: str, *, sort: bool = False) -> tuple[str, str | None]:
    """``(prefix, suffix)`` of a field as written, aliases resolved; SpecError for a field
    that is not Polyaxon's or that local runs do not have."""
    if not _FIELD_RE.match(name):
        raise SpecError(
            f"expected a field name such as 'status' or 'metrics.loss', got {name!r}", field=where
        )
    prefix, _, suffix = name.partition(".")
    prefix = _ALIASES.get(prefix, prefix)
    if sort:
        known = (prefix in _SORTABLE_NESTED) if suffix else (prefix in _SORTABLE)
        if not known:
            raise SpecError(
                f"cannot sort by {name!r}; expected one of {', '.join(sort_fields())}",
                field=where,
            )
        return prefix, suffix or None
    if suffix:
        if prefix not in _NESTED:
            return _unknown(name, where)
        only = _ONLY_SUFFIX.get(prefix)
        if only is not None and suffix != only:
            raise SpecError(f"expected {prefix}.{only}, got {name!r}", field=where)
        return prefix, suffix
    if prefix not in _PLAIN:
        return _unknown(name, where)
    return prefix, None


def _unknown(name: str, where: str) -> tuple[str, str | None]:
    prefix = name.partition(".")[0]
    if prefix in _NOT_LOCAL:
        detail = f"{name!r} is a Polyaxon field that local runs do not have"
    else:
        detail = f"unknown field {name!r}"
    raise SpecError(f"{detail}; expected one of {', '.join(query_fields())}", field=where)


# --------------------------------------------------------------------------- operations
def _json_value(text: str) -> Any:
    """Polyaxon's ``parse_operation_value``: JSON where the text is JSON, else the text."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


def _split_negation(operation: str) -> tuple[bool, str]:
    if operation.startswith("~"):
        return True, operation[1:].strip()
    return False, operation


def _split_comparison(operation: str) -> tuple[str | None, str]:
    for written, op in (("<=", "<="), ("=<", "<="), (">=", ">="), ("=>", ">=")):
        if operation.startswith(written):
            return op, operation[2:].strip()
    if operation[:1] in ("<", ">"):
        return operation[:1], operation[1:].strip()
    return None, operation


_FLIPPED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


@dataclass(frozen=True)
class _Parsed:
    op: str
    value: Any
    negated: bool


def _refuse(symbol: str, parser: str, operation: str, where: str) -> SpecError:
    return SpecError(
        f"{symbol!r} is not allowed in a {parser} condition, got {operation!r}", field=where
    )


def _parse_values(operation: str, parser: str, where: str) -> tuple[str, Any]:
    """``a|b|c`` as a list (at least two values), else one value."""
    parts = [p.strip() for p in operation.split("|") if p.strip()]
    if "|" in operation:
        if len(parts) < 2:
            raise _refuse("|", parser, operation, where)
        return "|", [_json_value(p) for p in parts]
    return "=", _json_value(operation)


def _parse_value(operation: str, where: str) -> _Parsed:
    """Polyaxon's ``parse_value_operation``: ``a``, ``~a``, ``a|b``, ``<a``... (no ``..``)."""
    if ".." in operation:
        raise _refuse("..", "value", operation, where)
    negated, rest = _split_negation(operation)
    if "|" in rest:
        op, value = _parse_values(rest, "value", where)
        return _Parsed(op, value, negated)
    comparison, rest = _split_comparison(rest)
    if not rest:
        raise SpecError(f"expected a value after {operation!r}", field=where)
    return _Parsed(comparison or "=", _json_value(rest), negated)


def _parse_search(operation: str, where: str) -> _Parsed:
    """Polyaxon's ``parse_search_operation``: values, sets and ``%`` searches; no comparison."""
    if ".." in operation:
        raise _refuse("..", "search", operation, where)
    negated, rest = _split_negation(operation)
    comparison, _ = _split_comparison(rest)
    if comparison is not None:
        raise _refuse(comparison, "search", operation, where)
    if "|" in rest:
        op, value = _parse_values(rest, "search", where)
        return _Parsed(op, value, negated)
    ends, starts = rest.startswith("%"), rest.endswith("%")
    if ends or starts:
        parts = [p.strip() for p in rest.split("%") if p.strip()]
        if len(parts) != 1:
            raise SpecError(
                f"expected one text between '%' (%text%, text% or %text), got {operation!r}",
                field=where,
            )
        op = "%%" if ends and starts else ("_%" if starts else "%_")
        return _Parsed(op, str(parts[0]), negated)
    if not rest:
        raise SpecError(f"expected a value after {operation!r}", field=where)
    return _Parsed("=", _json_value(rest), negated)


def _parse_scalar(operation: str, where: str) -> _Parsed:
    """Polyaxon's ``parse_scalar_operation``: a number, compared; no ``|`` nor ``..``."""
    for symbol in ("|", ".."):
        if symbol in operation:
            raise _refuse(symbol, "scalar", operation, where)
    negated, rest = _split_negation(operation)
    comparison, rest = _split_comparison(rest)
    value = _json_value(rest)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"expected a number, got {operation!r}", field=where)
    return _Parsed(comparison or "=", value, negated)


_DATE_FORMATS = (("%Y-%m-%d", 86400.0), ("%Y-%m-%d %H:%M", 60.0), ("%Y-%m-%d %H:%M:%S", 1.0))


def _timestamp(text: str, operation: str, where: str) -> tuple[float, float]:
    """``(start, length)`` in POSIX seconds of a date or date-time written in a query (UTC
    unless it says otherwise)."""
    for fmt, length in _DATE_FORMATS:
        try:
            moment = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        return moment.timestamp(), length
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(
            f"expected a date (YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS), got "
            f"{operation!r}",
            field=where,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp(), 1.0


#: Polyaxon's ``created_at:last_month``: the last 30 days.
_LAST_MONTH_S = 30 * 86400.0


def _parse_datetime(operation: str, where: str) -> _Parsed:
    """Polyaxon's ``parse_datetime_operation``: a date, compared or as a ``..`` range."""
    if "|" in operation:
        raise _refuse("|", "date", operation, where)
    negated, rest = _split_negation(operation)
    if ".." in rest:
        ends = [p.strip() for p in rest.split("..") if p.strip()]
        if len(ends) != 2:
            raise SpecError(f"expected a range 'START .. END', got {operation!r}", field=where)
        (start, _), (end, _) = (_timestamp(e, operation, where) for e in ends)
        return _Parsed("..", (start, end), negated)
    comparison, rest = _split_comparison(rest)
    if not rest:
        raise SpecError(f"expected a date after {operation!r}", field=where)
    if comparison is None and rest == "last_month":
        return _Parsed("<" if negated else ">=", time.time() - _LAST_MONTH_S, False)
    start, length = _timestamp(rest, operation, where)
    if comparison is None:
        return _Parsed("=", (start, start + length), negated)
    return _Parsed(comparison, start, negated)


_PARSERS: dict[str, Callable[[str, str], _Parsed]] = {
    "value": _parse_value,
    "search": _parse_search,
    "scalar": _parse_scalar,
    "datetime": _parse_datetime,
}


def _condition(field: str, parser: str, kind: str, operation: str, where: str) -> Condition:
    negated, rest = _split_negation(operation)
    if rest == "nil":
        return Condition(field, "nil", None, negated)
    parsed = _PARSERS[parser](operation, where)
    if parsed.op not in _OPS[kind]:
        allowed = ", ".join(sorted(_OPS[kind]))
        raise SpecError(
            f"{parsed.op!r} is not allowed for {field} (it takes {allowed}, '~' to negate), "
            f"got {operation!r}",
            field=where,
        )
    if parsed.negated and parsed.op in _FLIPPED:
        return Condition(field, _FLIPPED[parsed.op], parsed.value, False)
    return Condition(field, parsed.op, parsed.value, parsed.negated)


# --------------------------------------------------------------------------- entry points
def _expressions(text: str, where: str) -> list[str]:
    """The ``field:operation`` parts of a query joined by ``,`` or ``AND``."""
    if "(" in text or ")" in text or _OR_RE.search(text):
        raise SpecError(
            "OR and parentheses are not supported locally; join conditions with ',' (AND), "
            f"got {text!r}",
            field=where,
        )
    parts = [p.strip() for chunk in text.split(",") for p in _AND_RE.split(chunk)]
    return [p for p in parts if p]


def parse_query(text: str, where: str) -> list[Condition]:
    """The conditions of a join's ``query`` (all must hold); ``where`` names the field in
    errors (``run.operations[NAME].joins[0].query``). ``FIELD:_any_`` adds no condition."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"expected a query, {_EXAMPLE}, got {text!r}", field=where)
    conditions = []
    for expression in _expressions(text, where):
        name, colon, operation = expression.partition(":")
        name, operation = name.strip(), operation.strip()
        if not colon or not name or not operation:
            raise SpecError(
                f"expected FIELD:CONDITION, {_EXAMPLE}, got {expression!r}", field=where
            )
        prefix, suffix = _canonical(name, where)
        if operation == "_any_":
            continue
        parser, kind = (_NESTED if suffix else _PLAIN)[prefix]
        field = f"{prefix}.{suffix}" if suffix else prefix
        conditions.append(_condition(field, parser, kind, operation, where))
    return conditions


def parse_sort(text: str | None, where: str) -> list[tuple[str, bool]]:
    """A join's ``sort`` as ``(field, descending)`` pairs, in order; none for no sort."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise SpecError(
            f"expected fields such as '-metrics.loss, created_at', got {text!r}", field=where
        )
    keys = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        name = part[1:].strip() if descending else part
        prefix, suffix = _canonical(name, where, sort=True)
        keys.append((f"{prefix}.{suffix}" if suffix else prefix, descending))
    return keys


# --------------------------------------------------------------------------- join params
#: ``globals.X`` a join param may collect from each run (what local runs have).
GLOBALS = frozenset(
    {
        "uuid",
        "name",
        "status",
        "iteration",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "context_path",
        "artifacts_path",
        "run_artifacts_path",
        "run_outputs_path",
        "owner_name",
        "project_name",
        "project_unique_name",
    }
)
_SECTIONS = ("inputs", "outputs", "io", "artifacts")
_NESTED_SECTIONS = ("inputs", "outputs", "artifacts", "globals")
_TEMPLATE_RE = re.compile(r"^\{\{\s*(.*?)\s*\}\}\Z")


@dataclass(frozen=True)
class JoinSource:
    """What a join param collects from each run: ``section`` (``inputs``, ``outputs``,
    ``io``, ``artifacts``, ``globals``) and, where given, one ``key`` of it; or,
    for an artifacts value (``{files: [...], dirs: [...]}``), those paths in each run."""

    section: str
    key: str | None = None
    paths: dict[str, list[str]] | None = None


def join_source(value: Any, where: str) -> JoinSource:
    """A join param's ``value`` (``inputs.lr``, ``outputs``, ``globals.uuid``, ``{{ ... }}``
    around any of them, or an artifacts mapping), as Polyaxon's ``get_spec`` reads it."""
    if isinstance(value, dict):
        if not value or set(value) - {"files", "dirs"}:
            raise SpecError(
                f"expected an artifacts value {{files: [...], dirs: [...]}}, got {value!r}",
                field=where,
            )
        paths = {k: v for k, v in value.items() if v is not None}
        if not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in paths.values()
        ):
            raise SpecError(f"expected lists of relative paths, got {value!r}", field=where)
        return JoinSource("artifacts", None, paths)
    if not isinstance(value, str):
        raise SpecError(
            f"expected inputs.NAME, outputs.NAME, globals.uuid..., got {value!r}", field=where
        )
    match = _TEMPLATE_RE.match(value.strip())
    text = match.group(1) if match else value.strip()
    parts = [p.strip() for p in text.split(".")]
    if len(parts) == 1 and parts[0] in _SECTIONS:
        return JoinSource(parts[0])
    if parts[0] == "metrics":
        raise SpecError(
            f"expected outputs.NAME, got {value!r} (as in Polyaxon, a run's outputs hold the "
            "last value of each of its metrics)",
            field=where,
        )
    if len(parts) == 3 and parts[0] == "artifacts" and all(parts):
        return JoinSource("artifacts", f"{parts[1]}/{parts[2]}")
    if len(parts) == 2 and parts[0] in _NESTED_SECTIONS and parts[1]:
        section, key = parts
        if section == "globals" and key not in GLOBALS:
            raise SpecError(
                f"globals.{key} is not known locally; expected one of {', '.join(sorted(GLOBALS))}",
                field=where,
            )
        return JoinSource(section, key)
    raise SpecError(
        "expected inputs, outputs, io, artifacts, or one of inputs.NAME, outputs.NAME, "
        f"artifacts.NAME, globals.NAME, got {value!r}",
        field=where,
    )


def check_join(join: m.Join, where: str) -> None:
    """Everything of one join checkable before it runs (``where``: ``run.operations[NAME]
    .joins[0]``): its query, sort, limit, offset and the values of its params. A query or
    sort written as a template is checked once rendered."""
    if "{{" not in join.query and "{%" not in join.query:
        parse_query(join.query, f"{where}.query")
    if join.sort is not None and "{{" not in join.sort and "{%" not in join.sort:
        parse_sort(join.sort, f"{where}.sort")
    for name in ("limit", "offset"):
        number = getattr(join, name)
        if number is not None and number < 0:
            raise SpecError(f"expected 0 or more, got {number}", field=f"{where}.{name}")
    for key, param in (join.params or {}).items():
        join_source(param.value, f"{where}.params.{key}.value")
