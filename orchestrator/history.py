"""Read what the journal knows about past sweeps back: run records, and what a resume needs."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from orchestrator.engine.states import RunState
from orchestrator.engine.sweep import Resume, RunRecord
from orchestrator.exceptions import NotFoundError, SpecError
from orchestrator.spec import LoadedSpec, Plan, compile_plan, load_spec, load_text
from orchestrator.spec.load import fetch_url
from orchestrator.spec.resolve import RunSpec
from orchestrator.store.journal import Journal

__all__ = ["ResumePlan", "latest_records", "prepare_resume", "record_from_row"]


def record_from_row(
    row: sqlite3.Row, outputs: dict[str, object], metrics: dict[str, float]
) -> RunRecord:
    spec = RunSpec(
        index=row["idx"],
        uuid=row["id"],
        params=json.loads(row["params"] or "{}"),
        argv=json.loads(row["argv"] or "[]"),
        env={},
        working_dir=None,
        config_hash=row["config_hash"] or "",
        params_hash=row["params_hash"] or "",
    )
    return RunRecord(
        id=row["id"],
        index=row["idx"],
        spec=spec,
        state=RunState(row["state"]),
        reason=row["reason"],
        exit_code=row["exit_code"],
        attempt=row["attempt"],
        created_at=row["created_at"] or 0.0,
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=dict(metrics),
        outputs=dict(outputs),
    )


def latest_records(journal: Journal, sweep_id: str) -> list[RunRecord]:
    """The newest run of every configuration of a sweep, with outputs and last metrics."""
    rows = journal.latest_runs(sweep_id)
    ids = [row["id"] for row in rows]
    outputs = journal.outputs_of(ids)
    metrics = journal.last_metrics(ids)
    return [record_from_row(r, outputs.get(r["id"], {}), metrics.get(r["id"], {})) for r in rows]


@dataclass
class ResumePlan:
    """Everything needed to continue a journaled sweep."""

    row: sqlite3.Row
    loaded: LoadedSpec
    plan: Plan
    overrides: dict[str, str]
    resume: Resume


def _sweep_source(row: sqlite3.Row) -> LoadedSpec:
    """The spec a sweep ran: the text a daemon journaled, or its file or URL again."""
    spec_path = row["spec_path"] or "<submitted>"
    if row["spec_text"] is not None:
        return load_text(row["spec_text"], spec_path, Path(row["base_dir"] or "."))
    if spec_path.startswith(("http://", "https://")):
        return load_text(fetch_url(spec_path, spec_path, "urlRef"), spec_path)
    if not Path(spec_path).is_file():
        raise NotFoundError(
            f"the spec file of sweep {row['id'][:12]}, {spec_path}, no longer exists"
        )
    return load_spec(spec_path)


def prepare_resume(
    journal: Journal,
    row: sqlite3.Row,
    *,
    home: Path,
    overrides: dict[str, str] | None = None,
    loaded: LoadedSpec | None = None,
    force: bool = False,
    only_states: set[str] | None = None,
) -> ResumePlan:
    """Check that sweep ``row`` may continue and compile it: ``overrides`` add to its own
    ``-P`` values; a changed component is refused unless ``force``; ``only_states`` limits
    the configurations to those whose newest run is in one of these states (``rerun``)."""
    sweep_id = row["id"]
    if row["state"] in {"created", "running", "stopping"}:
        raise SpecError(f"sweep {sweep_id[:12]} is still running (pid {row['pid']}); stop it first")
    if loaded is None:
        loaded = _sweep_source(row)
    merged = {**json.loads(row["overrides"] or "{}"), **(overrides or {})}
    plan = compile_plan(loaded, merged, home=home, name=row["name"])
    if row["component_hash"] and plan.component_hash != row["component_hash"] and not force:
        raise SpecError(
            f"the component changed since sweep {sweep_id[:12]} ran (command, inputs, outputs "
            "or init); resuming would mix results of two components. Pass --force to resume "
            "anyway, matching configurations by their params",
            file=loaded.source,
        )
    previous = latest_records(journal, sweep_id)
    only = None
    if only_states is not None:
        only = {r.spec.params_hash for r in previous if r.state.value in only_states}
    return ResumePlan(row, loaded, plan, merged, Resume(sweep_id, previous, only))
