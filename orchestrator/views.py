"""History: ``ls`` (sweeps), ``show`` (a sweep's runs), ``logs`` (a run's output, followed)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from orchestrator.daemon.client import daemon_info, unix_client
from orchestrator.engine.sweep import RunRecord
from orchestrator.exceptions import NotFoundError
from orchestrator.history import latest_records, record_from_row
from orchestrator.reporting import format_duration, rows_table, run_row
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout, journal_path
from orchestrator.store.recovery import open_journal

__all__ = ["list_sweeps", "print_logs", "show_sweep"]

_TERMINAL = {"succeeded", "failed", "stopped", "skipped", "upstream_failed"}
#: How often ``logs -f`` looks for new output.
FOLLOW_POLL_S = 0.1


def _open(home: Path) -> Journal:
    path = journal_path(home)
    if not path.exists():
        raise NotFoundError(f"no journal in {home} (run a sweep first, or pass --home)")
    return open_journal(path)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def sweep_items(journal: Journal, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` sweeps with their counts by state (``ls --json``, the API)."""
    sweeps = journal.query("SELECT * FROM sweeps ORDER BY created_at DESC LIMIT ?", (limit,))
    items = []
    for s in sweeps:
        counts: dict[str, int] = {}
        for run in journal.latest_runs(s["id"]):
            counts[run["state"]] = counts.get(run["state"], 0) + 1
        started, finished = s["started_at"], s["finished_at"]
        items.append(
            {
                "id": s["id"],
                "name": s["name"],
                "spec": s["spec_path"],
                "state": s["state"],
                "reason": s["reason"],
                "counts": counts,
                "total": s["total"],
                "started": started,
                "duration_s": None
                if started is None
                else round((finished or time.time()) - started, 3),
            }
        )
    return items


def list_sweeps(home: Path, out: IO[str], err: IO[str], *, as_json: bool, limit: int) -> int:
    info = daemon_info(home)
    if info is not None:  # the daemon is running: ask it
        with unix_client(info) as client:
            items = client.get("/api/v1/sweeps", params={"limit": limit}).json()
    else:
        journal = _open(home)
        try:
            items = sweep_items(journal, limit)
        finally:
            journal.close()
    if as_json:
        out.write(json.dumps(items) + "\n")
        return 0
    if not items:
        err.write(f"no sweeps in {home}\n")
        return 0
    rows = [["id", "name", "spec", "state", "runs", "started", "duration"]]
    for item in items:
        spec = item["spec"] or ""
        shown_spec = os.path.relpath(spec) if spec and not spec.startswith("http") else spec
        runs = ", ".join(f"{n} {state}" for state, n in sorted(item["counts"].items())) or "-"
        rows.append(
            [
                item["id"][:12],
                item["name"] or "-",
                shown_spec,
                item["state"],
                runs,
                _when(item["started"]),
                format_duration(item["duration_s"]),
            ]
        )
    out.write(_table(rows) + "\n")
    return 0


def _sort_key(metric: str) -> Any:
    def key(run: RunRecord) -> tuple[int, float]:
        value = run.outputs.get(metric, run.metrics.get(metric))
        if isinstance(value, bool) or not isinstance(value, int | float):
            return (1, 0.0)  # runs without the metric go last
        return (0, float(value))

    return key


def sweep_detail(
    journal: Journal, ref: str, *, sort: str | None = None, every_attempt: bool = False
) -> dict[str, Any]:
    """A sweep and its runs (the newest of each configuration, or every attempt), sorted by
    an output or metric when asked: ``show --json`` and the API's ``GET /sweeps/{id}``."""
    sweep = journal.find_sweep(ref)
    if every_attempt:
        found = journal.query(
            "SELECT * FROM runs WHERE sweep_id = ? ORDER BY idx, created_at", (sweep["id"],)
        )
        ids = [r["id"] for r in found]
        outputs, metrics = journal.outputs_of(ids), journal.last_metrics(ids)
        runs = [
            record_from_row(r, outputs.get(r["id"], {}), metrics.get(r["id"], {})) for r in found
        ]
    else:
        runs = latest_records(journal, sweep["id"])
    if sort:
        descending = sort.startswith("-")
        metric = sort.lstrip("-")
        with_metric = [r for r in runs if _sort_key(metric)(r)[0] == 0]
        without = [r for r in runs if _sort_key(metric)(r)[0] == 1]
        with_metric.sort(key=_sort_key(metric), reverse=descending)
        runs = with_metric + without
    return {
        "sweep": sweep["id"],
        "name": sweep["name"],
        "state": sweep["state"],
        "reason": sweep["reason"],
        "spec": sweep["spec_path"],
        "runs": [run_row(r) | {"attempt": r.attempt} for r in runs],
    }


def show_sweep(
    home: Path,
    ref: str,
    out: IO[str],
    err: IO[str],
    *,
    fmt: str,
    sort: str | None,
    every_attempt: bool,
) -> int:
    info = daemon_info(home)
    if info is not None:  # the daemon is running: ask it
        query = {"sort": sort or "", "all": "1" if every_attempt else ""}
        with unix_client(info) as client:
            response = client.get(f"/api/v1/sweeps/{ref}", params=query)
        if response.status_code == 404:
            raise NotFoundError(response.json()["error"])
        body = response.json()
    else:
        journal = _open(home)
        try:
            body = sweep_detail(journal, ref, sort=sort, every_attempt=every_attempt)
        finally:
            journal.close()
    rows: list[dict[str, Any]] = body["runs"]
    if fmt == "json":
        out.write(msgspec.json.encode(body).decode() + "\n")
    elif fmt == "csv":
        params = sorted({k for r in rows for k in r["params"]})
        values = sorted({k for r in rows for k in {**r["metrics"], **r["outputs"]}})
        writer = csv.writer(out)
        writer.writerow(["index", "id", "state", "reason", "duration_s", *params, *values])
        for r in rows:
            merged = {**r["metrics"], **r["outputs"]}
            writer.writerow(
                [
                    r["index"],
                    r["id"],
                    r["state"],
                    r["reason"] or "",
                    "" if r["duration_s"] is None else r["duration_s"],
                    *[_cell(r["params"].get(p)) for p in params],
                    *[_cell(merged.get(v)) for v in values],
                ]
            )
    else:
        reason = f" ({body['reason']})" if body["reason"] else ""
        out.write(f"sweep {body['sweep'][:12]} {body['name'] or ''} {body['state']}{reason}\n")
        out.write(f"spec {body['spec']}\n\n")
        out.write(rows_table(rows, None) + "\n")
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _find_run(journal: Journal, ref: str) -> Any:
    if ":" in ref:
        sweep_ref, _, index = ref.rpartition(":")
        if index.isdigit():
            sweep = journal.find_sweep(sweep_ref)
            rows = journal.query(
                "SELECT * FROM runs WHERE sweep_id = ? AND idx = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (sweep["id"], int(index)),
            )
            if not rows:
                raise NotFoundError(f"sweep {sweep['id'][:12]} has no run {index}")
            return rows[0]
    return journal.find_run(ref)


def _follow_through_daemon(
    info: dict[str, Any], run_id: str, stream: str, offset: int, out: IO[str]
) -> None:
    """``logs -f`` pushed by the daemon (SSE) instead of polling the file."""
    with (
        unix_client(info) as client,
        client.stream(
            "GET",
            f"/api/v1/runs/{run_id}/logs",
            params={"follow": "1", "stream": stream, "offset": str(offset)},
        ) as response,
    ):
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data:") and kind != "end":
                out.write(line[6:] + "\n")
                out.flush()
            elif line == "":
                if kind == "end":
                    return
                kind = ""


def print_logs(
    home: Path, ref: str, out: IO[str], err: IO[str], *, follow: bool, stream: str, tail: int | None
) -> int:
    journal = _open(home)
    try:
        run = _find_run(journal, ref)
        run_dir = Path(run["run_dir"]) if run["run_dir"] else RunLayout(home, run["id"]).run_dir
        path = run_dir / f"{stream}.log"
        position = 0
        if tail is not None and path.exists():
            position = _tail_offset(path, tail)
        info = daemon_info(home) if follow else None
        state = run["state"]
        if info is not None and state not in _TERMINAL:
            _follow_through_daemon(info, run["id"], stream, position, out)
            return 0
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(position)
                    data = f.read()
                if data:
                    position += len(data)
                    out.write(data.decode(errors="replace"))
                    out.flush()
            if not follow:
                break
            state = journal.query("SELECT state FROM runs WHERE id = ?", (run["id"],))[0][0]
            if state in _TERMINAL:
                follow = False  # one last read picks up what was written before the end
                continue
            time.sleep(FOLLOW_POLL_S)
    finally:
        journal.close()
    return 0


def _tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last ``lines`` lines of ``path`` start."""
    size = path.stat().st_size
    if lines == 0:
        return size
    with open(path, "rb") as f:
        block = 64 * 1024
        offset = size
        found = 0
        data = b""
        while offset > 0 and found <= lines:
            step = min(block, offset)
            offset -= step
            f.seek(offset)
            data = f.read(step) + data
            found = data.count(b"\n") - (1 if data.endswith(b"\n") else 0)
        if found < lines:
            return 0
        body = data[:-1] if data.endswith(b"\n") else data
        cut = len(body)
        for _ in range(lines):
            cut = body.rfind(b"\n", 0, cut)
        return offset + cut + 1
