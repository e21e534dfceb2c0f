"""The read model: what the journal knows about past sweeps, for the CLI and the API alike.

Run records, the sweep list and a sweep's detail (``ls``/``show`` and ``GET /sweeps``), a run
by reference, whether a run finished, and what a resume needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.engine.records import Resume, RunRecord, records_from_rows
from orchestrator.engine.states import SWEEP_UNFINISHED, TERMINAL, RunState
from orchestrator.exceptions import NotFoundError, SpecError, SweepBusyError
from orchestrator.placement_view import placement_of
from orchestrator.procinfo import is_same_process
from orchestrator.spec import LoadedSpec, Plan, compile_plan, load_spec, load_text
from orchestrator.spec import models as m
from orchestrator.spec.load import fetch_url
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout, run_paths
from orchestrator.store.rows import RunRow, SweepRow

if TYPE_CHECKING:
    from orchestrator.engine.dag import DagResume
    from orchestrator.spec.dag import DagPlan

__all__ = [
    "DIFFERED",
    "DagResumePlan",
    "Objective",
    "ResumePlan",
    "find_run",
    "find_sweep",
    "latest_records",
    "node_rows",
    "not_started",
    "objective_of",
    "prepare_dag_resume",
    "prepare_resume",
    "run_detail",
    "run_diff",
    "run_finished",
    "run_row",
    "sweep_detail",
    "sweep_item",
    "sweep_items",
    "sweep_source",
]


def run_row(r: RunRecord) -> dict[str, Any]:
    """One run as ``--json``, ``show --json`` and the API show it."""
    return {
        "index": r.index,
        "id": r.id,
        "state": r.state.value,
        "reason": r.reason,
        "exit_code": r.exit_code,
        "params": r.spec.params,
        "outputs": r.outputs,
        "metrics": r.metrics,
        "duration_s": None if r.duration is None else round(r.duration, 3),
        "resources": r.resources,
        "place": r.place,
        "cpu_s": r.cpu_s,
        "max_rss": r.max_rss,
    }


@dataclass(frozen=True)
class Objective:
    """The metric a sweep optimises, and which way."""

    metric: str
    optimization: str  # "maximize" or "minimize"


def objective_of(matrix: m.Matrix | None) -> Objective | None:
    """What the matrix optimises (the CLI's "best run" line, the web page's sweep list): its
    first ``metric_early_stopping`` rule, else its own ``metric`` (bayes, hyperopt, hyperband)
    when that says which way; else None."""
    if matrix is None:
        return None
    for rule in matrix.early_stopping or []:
        if isinstance(rule, m.MetricEarlyStopping):
            return Objective(rule.metric, rule.optimization)
    metric = getattr(matrix, "metric", None)
    if isinstance(metric, m.OptimizationMetric):
        # Polyaxon's searches minimise a metric that does not say which way.
        return Objective(metric.name, metric.optimization or "minimize")
    return None


def latest_records(journal: Journal, sweep_id: str) -> list[RunRecord]:
    """The newest run of every configuration of a sweep, with outputs and last metrics."""
    return records_from_rows(journal, journal.latest_runs(sweep_id))


def sweep_items(journal: Journal, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` sweeps with their counts by state (``ls --json``, the API)."""
    # Counted in SQL: no run is read here; a pipeline counts its nodes.
    return [sweep_item(s, _counts_of(journal, s)) for s in journal.latest_sweeps(limit)]


def _counts_of(journal: Journal, s: SweepRow) -> dict[str, int]:
    """A sweep's configurations by state; a pipeline's nodes by state."""
    if s.kind == "dag":
        return journal.child_state_counts(s.id)
    return journal.latest_state_counts(s.id)


def node_rows(journal: Journal, dag_id: str) -> dict[str, SweepRow]:
    """A pipeline's node sweeps by node name (hooks' runs left out)."""
    return {
        row.node: row
        for row in journal.children_of(dag_id)
        if row.node is not None and not row.node.startswith("hook:")
    }


def sweep_item(s: SweepRow, counts: dict[str, int]) -> dict[str, Any]:
    """One sweep of :func:`sweep_items`, with its configurations' counts by state."""
    started, finished = s.started_at, s.finished_at
    return {
        "id": s.id,
        "name": s.name,
        "kind": s.kind,
        "spec": s.spec_path,
        "state": s.state,
        "reason": s.reason,
        "counts": counts,
        "total": s.total,
        "started": started,
        "duration_s": None if started is None else round((finished or time.time()) - started, 3),
    }


def _detail_rows(journal: Journal, rows: list[RunRow]) -> list[dict[str, Any]]:
    """:func:`run_row` of each journaled run, plus its attempt, built from the rows
    directly (no :class:`RunRecord` each: ``show`` of 50,000 runs spends its time here)."""
    ids = [row.id for row in rows]
    outputs = journal.outputs_of(ids)
    metrics = journal.last_metrics(ids)
    given = journal.resources_of(ids)
    places = journal.places_of(rows[0].sweep_id, (r.idx for r in rows)) if rows else {}
    usage = journal.usage_of(ids)
    now = time.time()
    out = []
    for r in rows:
        duration = None if r.started_at is None else (r.finished_at or now) - r.started_at
        used = usage.get(r.id, (None, None))
        out.append(
            {
                "index": r.idx,
                "id": r.id,
                "state": r.state,
                "reason": r.reason,
                "exit_code": r.exit_code,
                "params": r.params,
                "outputs": outputs.get(r.id, {}),
                "metrics": metrics.get(r.id, {}),
                "duration_s": None if duration is None else round(duration, 3),
                "resources": given.get(r.id),
                "place": places.get(r.idx),
                "cpu_s": used[0],
                "max_rss": used[1],
                "attempt": r.attempt,
            }
        )
    return out


def _sort_key(metric: str) -> Callable[[dict[str, Any]], tuple[int, float]]:
    def key(run: dict[str, Any]) -> tuple[int, float]:
        value = run["outputs"].get(metric, run["metrics"].get(metric))
        if isinstance(value, bool) or not isinstance(value, int | float):
            return (1, 0.0)  # runs without the metric go last
        return (0, float(value))

    return key


def sweep_detail(
    journal: Journal,
    ref: str,
    *,
    sort: str | None = None,
    every_attempt: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """A sweep and its runs (the newest of each configuration, or every attempt), sorted by
    an output or metric when asked: ``show --json`` and the API's ``GET /sweeps/{id}``.
    ``limit``/``offset`` give one page of those runs (read by SQLite unless sorted by a
    metric, which needs them all); the answer then says how many there are in all
    (``runs_total``) and where the next page starts (``next_offset``, None after the last)."""
    sweep = find_sweep(journal, ref)
    read = journal.runs_of if every_attempt else journal.latest_runs
    paged = limit is not None or offset > 0
    if sort:
        runs = _sorted(_detail_rows(journal, read(sweep.id)), sort)
        runs = runs[offset : None if limit is None else offset + limit]
    else:
        runs = _detail_rows(journal, read(sweep.id, limit, offset))
    body = {
        "sweep": sweep.id,
        "name": sweep.name,
        "state": sweep.state,
        "reason": sweep.reason,
        "spec": sweep.spec_path,
        "total": sweep.total,  # its configurations: runs never started are not in "runs"
        "runs": runs,
    }
    if paged:
        total = journal.run_count(sweep.id, every_attempt=every_attempt)
        end = offset + len(runs)
        body |= {"runs_total": total, "next_offset": end if end < total else None}
    if sweep.parent_id is not None:
        body |= {"parent": sweep.parent_id, "node": sweep.node}
    if sweep.kind == "dag":
        body["kind"] = "dag"
        body["nodes"] = _nodes(journal, sweep.id, every_attempt, sort)
    return body


def _nodes(
    journal: Journal, dag_id: str, every_attempt: bool, sort: str | None
) -> list[dict[str, Any]]:
    """A pipeline's nodes in the order they were decided (those never run too), each with
    its runs (sorted by an output or metric when asked)."""
    read = journal.runs_of if every_attempt else journal.latest_runs
    facts = _node_facts(journal, journal.find_sweep(dag_id))
    nodes = []
    for row in node_rows(journal, dag_id).values():
        runs = _detail_rows(journal, read(row.id))
        started, finished = row.started_at, row.finished_at
        nodes.append(
            {
                "name": row.node,
                "sweep_id": row.id,
                "kind": row.kind,
                "state": row.state,
                "reason": row.reason,
                "total": row.total,
                "started": started,
                "duration_s": None
                if started is None
                else round((finished or time.time()) - started, 3),
                **facts.get(row.node or "", {"upstream": None, "objective": None}),
                "runs": _sorted(runs, sort) if sort else runs,
            }
        )
    return nodes


def _node_facts(journal: Journal, dag: SweepRow) -> dict[str, dict[str, Any]]:
    """What each node of a pipeline waits for (``upstream``) and what its matrix optimises
    (``objective``: its best run), from its journaled spec compiled again (neither is
    journaled); empty when the spec cannot be read or compiled any more."""
    from orchestrator.exceptions import OrchestratorError
    from orchestrator.spec.dag import compile_dag

    try:
        plan = compile_dag(sweep_source(dag), dag.overrides, paths=run_paths(journal.path.parent))
    except (OrchestratorError, OSError, ValueError):
        return {}
    facts = {}
    for name, node in plan.nodes.items():
        objective = objective_of(node.operation.matrix)
        facts[name] = {
            "upstream": list(node.upstream),
            "objective": None
            if objective is None
            else {"metric": objective.metric, "goal": objective.optimization},
        }
    return facts


def _sorted(runs: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """By an output or metric (``-NAME``: descending); runs without it last, in order."""
    descending = sort.startswith("-")
    key = _sort_key(sort.lstrip("-"))
    with_metric = [r for r in runs if key(r)[0] == 0]
    without = [r for r in runs if key(r)[0] == 1]
    with_metric.sort(key=key, reverse=descending)
    return with_metric + without


def find_sweep(journal: Journal, ref: str) -> SweepRow:
    """A sweep by what every command and endpoint takes: an id, a unique id prefix, or
    ``last`` (the newest). NotFoundError when none matches; AmbiguousRefError (a
    NotFoundError) when a prefix matches several, naming how many."""
    return journal.find_sweep(ref)


def _indexed(ref: str) -> tuple[str, int] | None:
    """``SWEEP:INDEX`` split into its sweep reference and index; None for any other form."""
    sweep_ref, colon, index = ref.rpartition(":")
    if colon and sweep_ref and index.isascii() and index.isdigit():
        return sweep_ref, int(index)
    return None


def find_run(journal: Journal, ref: str) -> RunRow:
    """A run by what every command and endpoint takes: an id, a unique id prefix, or
    ``SWEEP:INDEX`` (the newest attempt of that configuration; ``SWEEP`` as
    :func:`find_sweep` takes it). NotFoundError (AmbiguousRefError for a prefix of several)."""
    indexed = _indexed(ref)
    if indexed is None:
        return journal.find_run(ref)
    sweep, index = find_sweep(journal, indexed[0]), indexed[1]
    run = journal.run_at(sweep.id, index)
    if run is None:
        never = _never_starts(journal, sweep, index)
        short = sweep.id[:12]
        raise NotFoundError(never or f"run {index} of sweep {short} has not started yet")
    return run


def _never_starts(journal: Journal, sweep: SweepRow, index: int) -> str | None:
    """Why configuration ``index`` of ``sweep``, which has no run yet, never will (one
    line), or None while it still may."""
    short = sweep.id[:12]
    if sweep.state not in SWEEP_UNFINISHED:
        return f"sweep {short} has no run {index} (it ended {sweep.state} without it)"
    beyond = sweep.total is not None and index >= sweep.total
    if beyond and journal.open_mapping_of(sweep.id) is None:
        span = f"0 to {sweep.total - 1}" if sweep.total else "none"
        return f"sweep {short} has no run {index} (its run indexes: {span})"
    if not is_same_process(sweep.pid, sweep.pid_start):
        return f"sweep {short} has no run {index}, and its orchestrator (pid {sweep.pid}) is gone"
    return None


def not_started(journal: Journal, ref: str) -> tuple[str, int] | None:
    """The sweep id and index when ``ref`` is ``SWEEP:INDEX`` of a run its sweep has not
    started yet but still may (the sweep is unfinished, its orchestrator alive, the index
    within its matrix): what ``logs -f`` waits for. None: ``ref`` is another form, names a
    run, or one that will never start (then :func:`find_run` says why)."""
    indexed = _indexed(ref)
    if indexed is None:
        return None
    sweep, index = find_sweep(journal, indexed[0]), indexed[1]
    if journal.run_at(sweep.id, index) is not None:
        return None
    if _never_starts(journal, sweep, index) is not None:
        return None
    return sweep.id, index


def run_finished(journal: Journal, run_id: str) -> bool:
    """Whether the journal holds a run in a state it never leaves (flushed writes only)."""
    return journal.run_state(run_id) in TERMINAL


@dataclass
class ResumePlan:
    """Everything needed to continue a journaled sweep."""

    row: SweepRow
    loaded: LoadedSpec
    plan: Plan
    overrides: dict[str, str]
    resume: Resume
    #: The sweep's mapping is still open (the daemon's ask/tell): the index the next added
    #: configuration gets. None: it is not open (never was, or was closed).
    open_from: int | None = None


def sweep_source(row: SweepRow) -> LoadedSpec:
    """The spec a sweep ran: the text a daemon journaled, or its file or URL again."""
    spec_path = row.spec_path or "<submitted>"
    if row.spec_text is not None:
        return load_text(row.spec_text, spec_path, Path(row.base_dir or "."))
    if spec_path.startswith(("http://", "https://")):
        return load_text(fetch_url(spec_path, spec_path, "urlRef"), spec_path)
    if not Path(spec_path).is_file():
        raise NotFoundError(f"the spec file of sweep {row.id[:12]}, {spec_path}, no longer exists")
    return load_spec(spec_path)


def prepare_resume(
    journal: Journal,
    row: SweepRow,
    *,
    home: Path,
    overrides: dict[str, str] | None = None,
    loaded: LoadedSpec | None = None,
    force: bool = False,
    only_states: set[str] | None = None,
) -> ResumePlan:
    """Check that sweep ``row`` may continue and compile it: ``overrides`` add to its own
    ``-P`` values; a changed component is refused unless ``force``; ``only_states`` limits
    the configurations to those whose newest run is in one of these states (``rerun``). An
    open mapping's added configurations are part of the sweep, as journaled."""
    sweep_id = row.id
    if row.parent_id is None or loaded is None:  # a node's own pipeline checked the rest
        _check_resumable(row, only_states)
    if row.kind == "dag":  # the command line resumes it with prepare_dag_resume
        raise SpecError(
            f"sweep {sweep_id[:12]} is a pipeline: it is resumed with its nodes "
            "(orchestrator resume/rerun, or the daemon's resume)"
        )
    if loaded is None:
        loaded = sweep_source(row)
    added = journal.open_mapping_of(sweep_id)
    matrix = loaded.operation.matrix
    if added is not None and isinstance(matrix, m.Mapping):
        # The configurations added while it ran (journaled when they were accepted) follow
        # the spec's own, at the indexes they had.
        matrix.values = [*matrix.values, *added.values]
    merged = {**row.overrides, **(overrides or {})}
    # A random search draws with the seed it first drew: the same configurations again.
    plan = compile_plan(
        loaded,
        merged,
        paths=run_paths(home),
        name=row.name,
        open_mapping=added is not None,
        seed=row.seed,
    )
    if row.component_hash and plan.component_hash != row.component_hash and not force:
        raise SpecError(
            f"the component changed since sweep {sweep_id[:12]} ran (command, inputs, outputs "
            "or init); resuming would mix results of two components. Pass --force to resume "
            "anyway, matching configurations by their params",
            file=loaded.source,
        )
    if only_states is not None and plan.expansion is not None and plan.expansion.adaptive:
        raise SpecError(
            f"a {plan.expansion.kind} search cannot re-run chosen runs: its later suggestions "
            "were made from their results; resume it, or start it again",
            field="only",
        )
    previous = latest_records(journal, sweep_id)
    only = None
    if only_states is not None:
        only = {r.spec.params_hash for r in previous if r.state.value in only_states}
    open_from = None
    if added is not None and not added.closed and isinstance(matrix, m.Mapping):
        open_from = len(matrix.values)
    return ResumePlan(row, loaded, plan, merged, Resume(sweep_id, previous, only), open_from)


@dataclass
class DagResumePlan:
    """Everything needed to continue a journaled pipeline."""

    row: SweepRow
    loaded: LoadedSpec
    plan: DagPlan
    overrides: dict[str, str]
    resume: DagResume


def _check_resumable(row: SweepRow, only_states: set[str] | None) -> None:
    """``only_states`` are states a run ends in, and the sweep is not running now."""
    unknown = sorted(set(only_states or ()) - {s.value for s in TERMINAL})
    if unknown:
        finished = ", ".join(s.value for s in RunState if s in TERMINAL)
        raise SpecError(f"expected states a run ends in ({finished}), got {unknown}", field="only")
    if row.state in SWEEP_UNFINISHED:
        raise SweepBusyError(f"sweep {row.id[:12]} is still running (pid {row.pid}); stop it first")
    if row.parent_id is not None:
        raise SpecError(
            f"sweep {row.id[:12]} is node {row.node!r} of pipeline {row.parent_id[:12]}: "
            f"resume or re-run the pipeline ({row.parent_id[:12]})"
        )


def prepare_dag_resume(
    journal: Journal,
    row: SweepRow,
    *,
    home: Path,
    overrides: dict[str, str] | None = None,
    loaded: LoadedSpec | None = None,
    force: bool = False,
    only_states: set[str] | None = None,
) -> DagResumePlan:
    """Check that pipeline ``row`` may continue and compile it again: its nodes that
    succeeded are kept; ``only_states`` (``rerun``) runs again only the nodes in those states
    (and, within each, its runs in those states), and the nodes that did not run because of
    them are decided anew."""
    from orchestrator.engine.dag import DagResume
    from orchestrator.spec.dag import compile_dag

    _check_resumable(row, only_states)
    if loaded is None:
        loaded = sweep_source(row)
    merged = {**row.overrides, **(overrides or {})}
    plan = compile_dag(loaded, merged, paths=run_paths(home))
    nodes = node_rows(journal, row.id)
    resume = DagResume(row.id, nodes, only_states, force)
    return DagResumePlan(row, loaded, plan, merged, resume)


def run_detail(journal: Journal, ref: str) -> dict[str, Any]:
    """One run in full (``show SWEEP:INDEX``, ``show --run RUN``, ``GET /api/v1/runs/RUN``):
    what it ran, how it ended, its metrics summarised, every state it went through with the
    reason, what it was given, where it sits in a search, and where its files are."""
    run = find_run(journal, ref)
    run_dir = Path(run.run_dir) if run.run_dir else RunLayout(journal.path.parent, run.id).run_dir
    end = run.finished_at or (time.time() if run.started_at is not None else None)
    cpu_s, max_rss = journal.usage_of([run.id]).get(run.id, (None, None))
    return {
        "run": run.id,
        "sweep": run.sweep_id,
        "index": run.idx,
        "attempt": run.attempt,
        "state": run.state,
        "reason": run.reason,
        "exit_code": run.exit_code,
        "params": run.params,
        "argv": run.argv,
        "outputs": journal.outputs_of([run.id]).get(run.id, {}),
        "metrics": journal.metric_summary(run.id),
        "states": [
            {"from": was, "to": to, "reason": why, "at": at}
            for was, to, why, at in journal.transitions_of(run.id)
        ],
        "resources": journal.resources_of([run.id]).get(run.id),
        "placement": placement_of(journal, run.id),  # a Dask worker's; None: this machine
        "place": journal.places_of(run.sweep_id, [run.idx]).get(run.idx),
        "cpu_s": cpu_s,
        "max_rss": max_rss,
        # Where it ran (the sweep's invocation that made it) and what its spec added to the
        # environment every run of that invocation started from.
        "provenance": _provenance_of(journal, run),
        "env": journal.run_env_of(run.id),
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": None if end is None or run.started_at is None else end - run.started_at,
        "paths": {
            "run": str(run_dir),
            "stdout": str(run_dir / "stdout.log"),
            "stderr": str(run_dir / "stderr.log"),
            "outputs": str(run_dir / "outputs"),
        },
    }


def _provenance_of(journal: Journal, run: RunRow) -> dict[str, Any] | None:
    """The record of the invocation that created ``run``; one whose code and packages were
    not collected says why (``missing``): an error, or its orchestrator is collecting them
    now, or stopped first (it died, or was killed, in the moment after it started)."""
    made = journal.provenance_at(run.sweep_id, run.created_at)
    if made is None or made["collected"]:
        return made
    made["missing"] = made.get("error") or (
        "being collected"
        if _collecting(journal, run.sweep_id, made["at"])
        else "the orchestrator stopped before it was collected"
    )
    return made


def _collecting(journal: Journal, sweep_id: str, at: float) -> bool:
    """Whether the invocation of ``sweep_id`` that started ``at`` is the newest and alive."""
    sweep = journal.find_sweep(sweep_id)
    return (
        sweep.state in SWEEP_UNFINISHED
        and is_same_process(sweep.pid, sweep.pid_start)
        and journal.newest_provenance_at(sweep_id) == at
    )


#: What ``diff`` compares between two runs, in this order: each a mapping of name → value.
DIFFERED = (
    "params",
    "outputs",
    "metrics",
    "resources",
    "place",
    "code",
    "packages",
    "environment",
    "machine",
)


def run_diff(journal: Journal, left: str, right: str) -> dict[str, Any]:
    """What differs between two runs: for each of :data:`DIFFERED` (metrics by their last
    value; code: commit, tree, dirty flag and diff; packages by name; the environment each
    run received; machine: interpreter, host, user, platform, working folder), the names whose
    values differ, with both values (None: the run has no such name); ``argv`` when the
    command lines differ."""
    a, b = run_detail(journal, left), run_detail(journal, right)
    changes: dict[str, dict[str, list[Any]]] = {}
    for part in DIFFERED:
        mine, theirs = _flat(part, a), _flat(part, b)
        changed = {
            name: [mine.get(name), theirs.get(name)]
            for name in sorted(mine.keys() | theirs.keys())
            if mine.get(name) != theirs.get(name)
        }
        if changed:
            changes[part] = changed
    body: dict[str, Any] = {"runs": [a["run"], b["run"]], "differs": changes}
    if a["argv"] != b["argv"]:
        body["argv"] = [a["argv"], b["argv"]]
    return body


#: The fields of a provenance record that ``diff`` shows under "code" and "machine".
_CODE = ("git_commit", "git_tree", "git_dirty", "diff_hash")
_MACHINE = ("python", "python_version", "host", "user", "platform", "cwd")


def _flat(part: str, run: dict[str, Any]) -> dict[str, Any]:
    """One part of :func:`run_detail`'s answer as a flat name → value mapping."""
    made = run["provenance"] or {}
    if part == "metrics":
        return {name: summary["last"] for name, summary in run["metrics"].items()}
    if part == "code":
        return {name: made.get(name) for name in _CODE if made}
    if part == "machine":
        return {name: made.get(name) for name in _MACHINE if made}
    if part == "packages":
        listed = (made.get("packages") or "").splitlines()
        return dict(line.split("==", 1) for line in listed if "==" in line)
    if part == "environment":
        return {**(made.get("environment") or {}), **run["env"]}
    return dict(run[part] or {})
