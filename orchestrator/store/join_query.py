"""Joins: the runs of a pipeline's nodes a join's query selects, as lists of their values.

``joins[].query/sort/offset/limit`` (parsed by :mod:`orchestrator.spec.joins`) become one SQL
query over the newest attempt of each configuration of the given sweeps: the filter, the order
(missing values last, in both directions) and the page are SQLite's, so a 50,000-run sweep
joined with ``limit: 5`` reads five rows into Python. Each join param then collects one value
per selected run, in that order (Polyaxon's ``V1Join``): ``inputs.X``, ``outputs.X`` (a run's
outputs hold the last value of each of its metrics, as in Polyaxon), ``inputs``, ``outputs``,
``io``, ``globals.X`` and ``artifacts...`` (the run's local folders).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.spec import models as m
from orchestrator.spec.joins import Condition, JoinSource, join_source, parse_query, parse_sort
from orchestrator.store.journal import Journal

__all__ = ["JoinedRun", "resolve_joins", "select_runs"]

#: The last reported value of metric ``?`` of run ``r``: the newest row of ``metrics_by_run``.
_METRIC = (
    "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.name = ? "
    "ORDER BY m.rowid DESC LIMIT 1)"
)
#: Output ``?`` of run ``r``, decoded from its JSON (a number stays a number).
_OUTPUT = "(SELECT json_extract(o.value, '$') FROM outputs o WHERE o.run_id = r.id AND o.name = ?)"
_UPDATED = "COALESCE(r.finished_at, r.started_at, r.created_at)"
#: Column expressions of the fields without a suffix (``r``: the run, ``s``: its sweep,
#: ``n``: what the caller says of its node).
_COLUMNS = {
    "uuid": "r.id",
    "name": "n.node",
    "description": "s.description",
    "status": "r.state",
    "kind": "n.kind",
    "project": "'local'",
    "project.name": "'local'",
    "pipeline": "s.parent_id",
    "hub.name": "n.component",
    "created_at": "r.created_at",
    "updated_at": _UPDATED,
    "started_at": "r.started_at",
    "finished_at": "r.finished_at",
    "duration": "(r.finished_at - r.started_at)",
    "wait_time": "(r.started_at - r.created_at)",
}
#: What a run is, for the values of join params.
_SELECT = (
    "r.id, r.params, r.state, r.idx, r.created_at, r.started_at, r.finished_at, r.run_dir, n.node"
)


@dataclass(frozen=True)
class JoinedRun:
    """One run a join selected."""

    id: str
    params: dict[str, Any]
    state: str
    idx: int
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    run_dir: Path
    node: str


def _field(field: str) -> tuple[str, list[Any]]:
    """The SQL expression of a query or sort field, with its parameters."""
    if field in _COLUMNS:
        return _COLUMNS[field], []
    section, _, key = field.partition(".")
    if section == "inputs":
        return "json_extract(r.params, ?)", [f'$."{key}"']
    if section == "outputs":
        return f"COALESCE({_OUTPUT}, {_METRIC})", [key, key]
    if section == "metrics":
        return f"COALESCE({_METRIC}, {_OUTPUT})", [key, key]
    raise AssertionError(f"no column for {field!r}")  # parse_query knows no other field


def _like(text: str, op: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"%%": f"%{escaped}%", "_%": f"{escaped}%", "%_": f"%{escaped}"}[op]


def _sql_value(value: Any) -> Any:
    """A query value as SQLite compares it with a JSON-decoded one (lists and mappings as
    their JSON text)."""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def _tags_condition(condition: Condition) -> tuple[str, list[Any]]:
    """Polyaxon's tags condition: holds the tag, or one of the tags."""
    if condition.op == "nil":
        sql = "(s.tags IS NULL OR json_array_length(s.tags) = 0)"
        return (f"NOT {sql}" if condition.negated else sql), []
    values = condition.value if condition.op == "|" else [condition.value]
    marks = ",".join("?" * len(values))
    sql = f"EXISTS (SELECT 1 FROM json_each(s.tags) WHERE json_each.value IN ({marks}))"
    return (f"NOT {sql}" if condition.negated else sql), [_sql_value(v) for v in values]


def _where(condition: Condition) -> tuple[str, list[Any]]:
    """One condition as SQL. A negated one also matches runs without the value (Polyaxon's
    ``exclude``), except ``~nil``."""
    if condition.field == "tags":
        return _tags_condition(condition)
    expr, params = _field(condition.field)
    op, value = condition.op, condition.value
    if op == "nil":
        return f"{expr} IS {'NOT ' if condition.negated else ''}NULL", params
    if op in ("<", "<=", ">", ">="):  # negations were turned around by parse_query
        return f"{expr} {op} ?", [*params, _sql_value(value)]
    if op == "|":
        sql = f"{expr} IN ({','.join('?' * len(value))})"
        params = [*params, *(_sql_value(v) for v in value)]
    elif op in ("%%", "_%", "%_"):
        sql, params = f"{expr} LIKE ? ESCAPE '\\'", [*params, _like(str(value), op)]
    elif op == "..":
        sql, params = f"{expr} BETWEEN ? AND ?", [*params, *value]
    elif op == "=" and isinstance(value, tuple):  # a day or a minute of a date field
        sql, params = f"({expr} >= ? AND {expr} < ?)", [*params, value[0], *params, value[1]]
    else:
        sql, params = f"{expr} = ?", [*params, _sql_value(value)]
    if condition.negated:
        return f"NOT COALESCE({sql}, 0)", params
    return sql, params


def _order(sort: Sequence[tuple[str, bool]]) -> tuple[str, list[Any]]:
    """ORDER BY the sort keys, missing values last both ways; Polyaxon's default
    (``-updated_at``) without one; then node order and matrix order, so ties are stable."""
    keys = list(sort) or [("updated_at", True)]
    parts: list[str] = []
    params: list[Any] = []
    for field, descending in keys:
        expr, field_params = _field(field)
        parts += [f"{expr} IS NULL", f"{expr} {'DESC' if descending else 'ASC'}"]
        params += field_params * 2
    return ", ".join([*parts, "n.ord", "r.idx", "r.id"]), params


def select_runs(
    journal: Journal,
    sweep_ids: Sequence[str],
    conditions: Sequence[Condition],
    sort: Sequence[tuple[str, bool]],
    *,
    limit: int | None = None,
    offset: int | None = None,
    nodes: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
    components: Mapping[str, str] | None = None,
) -> list[JoinedRun]:
    """The newest attempt of each configuration of ``sweep_ids`` that meets every condition,
    in ``sort`` order, ``offset`` and ``limit`` applied: all of it done by SQLite. ``nodes``
    (sweep id → node name: the run's ``name``), ``kinds`` (``job`` where not given) and
    ``components`` (the component's name, ``hub.name``; the sweep's name where not given)."""
    if not sweep_ids:
        return []
    node_rows = ",".join("(?, ?, ?, ?, ?)" for _ in sweep_ids)
    node_params: list[Any] = []
    for rank, sweep_id in enumerate(sweep_ids):
        node = (nodes or {}).get(sweep_id)
        node_params += [
            sweep_id,
            rank,
            node,
            (kinds or {}).get(sweep_id, "job"),
            (components or {}).get(sweep_id),
        ]
    marks = ",".join("?" * len(sweep_ids))
    wheres, where_params = ["1"], []
    for condition in conditions:
        sql, params = _where(condition)
        wheres.append(sql)
        where_params += params
    order, order_params = _order(sort)
    sql = (
        "WITH given(sweep_id, ord, node, kind, component) AS (VALUES " + node_rows + "), "
        "latest AS (SELECT sweep_id, params_hash, max(created_at) AS newest FROM runs "
        f"WHERE sweep_id IN ({marks}) GROUP BY sweep_id, params_hash) "
        f"SELECT {_SELECT} FROM latest l CROSS JOIN runs r ON r.sweep_id = l.sweep_id "
        "AND r.params_hash = l.params_hash AND r.created_at = l.newest "
        "JOIN sweeps s ON s.id = r.sweep_id "
        "JOIN (SELECT g.sweep_id, g.ord, g.kind, COALESCE(g.node, sw.node, sw.name) AS node, "
        "COALESCE(g.component, sw.name) AS component FROM given g "
        "JOIN sweeps sw ON sw.id = g.sweep_id) n ON n.sweep_id = r.sweep_id "
        f"WHERE {' AND '.join(wheres)} ORDER BY {order} LIMIT ? OFFSET ?"
    )
    params = [
        *node_params,
        *sweep_ids,
        *where_params,
        *order_params,
        -1 if limit is None else limit,
        offset or 0,
    ]
    home = journal.path.parent
    return [_joined(row, home) for row in journal._query(sql, params)]


def _joined(row: tuple[Any, ...], home: Path) -> JoinedRun:
    run_id, params, state, idx, created, started, finished, run_dir, node = row
    return JoinedRun(
        id=run_id,
        params=json.loads(params) if params else {},
        state=state,
        idx=idx,
        created_at=created,
        started_at=started,
        finished_at=finished,
        run_dir=Path(run_dir) if run_dir else home / "runs" / run_id,
        node=node or "",
    )


# --------------------------------------------------------------------------- values
def _iso(when: float | None) -> str | None:
    return None if when is None else dt.datetime.fromtimestamp(when, dt.UTC).isoformat()


def _global(run: JoinedRun, key: str) -> Any:
    """``globals.KEY`` of a joined run (the keys :data:`orchestrator.spec.joins.GLOBALS`)."""
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = run.finished_at - run.started_at
    values: dict[str, Any] = {
        "uuid": run.id,
        "name": run.node,
        "status": run.state,
        "iteration": run.idx,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration": duration,
        "context_path": str(run.run_dir),
        "run_artifacts_path": str(run.run_dir),
        "artifacts_path": str(run.run_dir / "artifacts"),
        "run_outputs_path": str(run.run_dir / "outputs"),
        "owner_name": "local",
        "project_name": "local",
        "project_unique_name": "local.local",
    }
    return values[key]


def _artifact(run: JoinedRun, key: str | None) -> str | None:
    """``artifacts``/``artifacts.base``: the run's folder; ``artifacts.outputs``: its outputs
    folder; ``artifacts.NAME``: ``artifacts/NAME`` in it, where the run wrote one (Polyaxon's
    lineage: runs that logged none add nothing)."""
    if key in (None, "base"):
        return str(run.run_dir)
    if key == "outputs":
        return str(run.run_dir / "outputs")
    path = run.run_dir / "artifacts" / str(key)
    return str(path) if path.exists() else None


class _Values:
    """Each selected run's outputs (with its metrics' last values under them, as Polyaxon
    merges them), read once for all the params that need them."""

    def __init__(self, journal: Journal, runs: Sequence[JoinedRun], sources: Iterable[JoinSource]):
        self.runs = runs
        self.outputs: dict[str, dict[str, Any]] = {}
        if any(s.section in ("outputs", "io") for s in sources):
            ids = [run.id for run in runs]
            metrics = journal.last_metrics(ids)
            outputs = journal.outputs_of(ids)
            self.outputs = {i: {**metrics.get(i, {}), **outputs.get(i, {})} for i in ids}

    def collect(self, source: JoinSource) -> Any:
        """The value a param with ``source`` receives: a list in the runs' order (an
        artifacts value: its files and dirs in every run)."""
        if source.paths is not None:
            return {
                kind: [str(run.run_dir / p) for run in self.runs for p in paths]
                for kind, paths in source.paths.items()
            }
        if source.section == "artifacts":
            found = (_artifact(run, source.key) for run in self.runs)
            return [path for path in found if path is not None]
        return [self._one(run, source) for run in self.runs]

    def _one(self, run: JoinedRun, source: JoinSource) -> Any:
        outputs = self.outputs.get(run.id, {})
        section, key = source.section, source.key
        if section == "globals":
            return _global(run, str(key))
        if section == "inputs":
            return run.params if key is None else run.params.get(key)
        if section == "outputs":
            return outputs if key is None else outputs.get(key)
        return {**run.params, **outputs}  # io


def resolve_joins(
    journal: Journal,
    sweep_ids: Sequence[str],
    joins: Sequence[m.Join],
    nodes_by_sweep: Mapping[str, str],
    *,
    where: str = "joins",
    kinds: Mapping[str, str] | None = None,
    components: Mapping[str, str] | None = None,
) -> dict[str, m.Param]:
    """Each join's params as lists over the runs it selects (see :func:`select_runs`), in
    its order; every other setting of a param (``contextOnly``, ``toInit``...) kept. A later
    join's param of the same name wins. Queries and sorts must be rendered already; a bad one
    is a SpecError naming ``{where}[i].query``."""
    joined: dict[str, m.Param] = {}
    for i, join in enumerate(joins):
        at = f"{where}[{i}]"
        conditions = parse_query(join.query, f"{at}.query")
        sort = parse_sort(join.sort, f"{at}.sort")
        params = join.params or {}
        sources = {k: join_source(p.value, f"{at}.params.{k}.value") for k, p in params.items()}
        runs = select_runs(
            journal,
            sweep_ids,
            conditions,
            sort,
            limit=join.limit,
            offset=join.offset,
            nodes=nodes_by_sweep,
            kinds=kinds,
            components=components,
        )
        values = _Values(journal, runs, sources.values())
        for key, param in params.items():
            joined[key] = msgspec.structs.replace(param, value=values.collect(sources[key]))
    return joined
