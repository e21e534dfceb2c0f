"""Read what the journal knows about past sweeps back into run records."""

from __future__ import annotations

import json
import sqlite3

from orchestrator.engine.states import RunState
from orchestrator.engine.sweep import RunRecord
from orchestrator.spec.resolve import RunSpec
from orchestrator.store.journal import Journal

__all__ = ["latest_records", "record_from_row"]


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
