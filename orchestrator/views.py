"""Printing for the history and cache commands: ``ls`` (sweeps), ``show`` (a sweep's runs),
``logs`` (a run's output, followed) and ``cache ls``/``cache clear``.

Views only print: what they print comes from the daemon when one runs
(:func:`~orchestrator.daemon.client.daemon_client`), else from the read model in
:mod:`orchestrator.history`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import msgspec

from orchestrator.daemon.client import daemon_client
from orchestrator.engine.recovery import open_journal
from orchestrator.exceptions import NotFoundError, UnavailableError
from orchestrator.history import (
    DIFFERED,
    find_run,
    not_started,
    run_detail,
    run_diff,
    run_finished,
    sweep_detail,
    sweep_items,
)
from orchestrator.logfollow import follow_log
from orchestrator.placement_view import placement_row
from orchestrator.reporting import dag_tree, format_duration, rows_table
from orchestrator.store.cache import CacheStore
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout, existing_journal
from orchestrator.store.rows import RunRow
from orchestrator.wording import plural

if TYPE_CHECKING:
    import httpx

__all__ = ["clear_entries", "list_entries", "list_sweeps", "print_logs", "show_sweep"]

#: How often ``logs -f`` without a daemon looks for new output (and for a run to start).
FOLLOW_POLL_S = 0.1


def _open(home: Path) -> Journal:
    return open_journal(existing_journal(home))


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _answer(response: Any) -> Any:
    """The daemon's JSON answer; its error as one line: 404 (not found) and 400 (a prefix
    of several) are a bad reference, as without the daemon; else unavailable."""
    if response.status_code == 200:
        return response.json()
    try:
        message = str(response.json().get("error"))
    except (ValueError, AttributeError):
        message = f"the daemon answered {response.status_code}"
    if response.status_code in (400, 404):
        raise NotFoundError(message)
    raise UnavailableError(message)


def _ask(home: Path, path: str, params: dict[str, Any], read: Callable[[Journal], Any]) -> Any:
    """The daemon's answer to ``GET path`` when one runs, else ``read`` of the journal: the
    same read model either way."""
    client = daemon_client(home)  # None: no daemon, or it is gone (read the journal)
    if client is not None:  # the daemon is running: ask it
        with client:
            return _answer(client.get(path, params=params))
    journal = _open(home)
    try:
        return read(journal)
    finally:
        journal.close()


def list_sweeps(home: Path, out: IO[str], err: IO[str], *, as_json: bool, limit: int) -> int:
    items = _ask(home, "/api/v1/sweeps", {"limit": limit}, lambda j: sweep_items(j, limit))
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
        runs = _counts(item["counts"], item.get("total"))
        if item.get("kind") == "dag":  # a pipeline counts its nodes
            runs = f"nodes: {runs}"
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


def show_sweep(
    home: Path,
    ref: str,
    out: IO[str],
    err: IO[str],
    *,
    fmt: str,
    sort: str | None,
    every_attempt: bool,
    page: tuple[int | None, int] = (None, 0),
) -> int:
    """``page``: (limit, offset) of the runs shown (None: all of them)."""
    limit, offset = page
    query = {"sort": sort or "", "all": "1" if every_attempt else ""}
    if limit is not None or offset:
        query |= {"limit": "" if limit is None else str(limit), "offset": str(offset)}
    body = _ask(
        home,
        f"/api/v1/sweeps/{quote(ref, safe=':')}",
        query,
        lambda j: sweep_detail(
            j, ref, sort=sort, every_attempt=every_attempt, limit=limit, offset=offset
        ),
    )
    rows: list[dict[str, Any]] = body["runs"]
    nodes = body.get("nodes")
    if nodes is not None:  # a pipeline: its nodes' runs, each with its node's name
        rows = [{"node": n["name"], **r} for n in nodes for r in n["runs"]]
    if fmt == "json":
        out.write(msgspec.json.encode(body).decode() + "\n")
    elif fmt == "csv":
        params = sorted({k for r in rows for k in r["params"]})
        values = sorted({k for r in rows for k in {**r["metrics"], **r["outputs"]}})
        writer = csv.writer(out)
        head = ["index", "id", "state", "reason", "duration_s", "cpu_s", "max_rss"]
        first = ["node"] if nodes is not None else []
        writer.writerow([*first, *head, *params, *values])
        for r in rows:
            merged = {**r["metrics"], **r["outputs"]}
            writer.writerow(
                [
                    *([r["node"]] if nodes is not None else []),
                    r["index"],
                    r["id"],
                    r["state"],
                    r["reason"] or "",
                    "" if r["duration_s"] is None else r["duration_s"],
                    _cell(r.get("cpu_s")),
                    _cell(r.get("max_rss")),
                    *[_cell(r["params"].get(p)) for p in params],
                    *[_cell(merged.get(v)) for v in values],
                ]
            )
    elif nodes is not None:
        out.write(dag_tree(body, attempts=every_attempt) + "\n")
    else:
        reason = f" ({body['reason']})" if body["reason"] else ""
        out.write(f"sweep {body['sweep'][:12]} {body['name'] or ''} {body['state']}{reason}\n")
        out.write(f"spec {body['spec']}\n\n")
        # "total" (the sweep's run count), where the read model gives it: runs never started.
        table = rows_table(rows, total=body.get("total"), attempts=every_attempt)
        out.write(table + "\n")
    return 0


def _counts(counts: dict[str, int], total: int | None) -> str:
    """``2 succeeded, 4 stopped, 14 not started``: they add up to the sweep's run count."""
    parts = [f"{n} {state}" for state, n in sorted(counts.items())]
    missing = (total or 0) - sum(counts.values())
    if missing > 0:
        parts.append(f"{missing} not started")
    return ", ".join(parts) or "-"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _follow_through_daemon(
    client: httpx.Client, run_id: str, stream: str, offset: int, out: IO[str]
) -> None:
    """``logs -f`` pushed by the daemon (SSE) instead of polling the file."""
    with client.stream(
        "GET",
        f"/api/v1/runs/{run_id}/logs",
        params={"follow": "1", "stream": stream, "offset": str(offset)},
    ) as response:
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
        pending = not_started(journal, ref) if follow else None
        run = _started(journal, *pending, err) if pending else find_run(journal, ref)
        run_dir = Path(run.run_dir) if run.run_dir else RunLayout(home, run.id).run_dir
        path = run_dir / f"{stream}.log"
        position = 0
        if tail is not None and path.exists():
            position = _tail_offset(path, tail)
        client = daemon_client(home) if follow and not run_finished(journal, run.id) else None
        if client is not None:  # the daemon is running: it pushes new lines
            with client:
                _follow_through_daemon(client, run.id, stream, position, out)
            return 0
        anyio.run(_copy_log, journal, run.id, path, position, out, follow)
    finally:
        journal.close()
    return 0


def _started(journal: Journal, sweep_id: str, index: int, err: IO[str]) -> RunRow:
    """``logs -f SWEEP:INDEX`` before its sweep has started that run: wait for it (polling
    the journal, as ``logs -f`` polls a log without a daemon). NotFoundError, one line, when
    the sweep ends (or its orchestrator dies) without starting it."""
    ref = f"{sweep_id}:{index}"
    err.write(f"waiting for run {index} of sweep {sweep_id[:12]} to start\n")
    err.flush()
    while not_started(journal, ref) is not None:
        time.sleep(FOLLOW_POLL_S)
    return find_run(journal, ref)


async def _copy_log(
    journal: Journal, run_id: str, path: Path, offset: int, out: IO[str], follow: bool
) -> None:
    """The log from ``offset``; with ``follow``, new output too until the run finishes
    (polled: no events reach this process)."""

    async def finished() -> bool:
        return not follow or run_finished(journal, run_id)

    async def wake() -> None:
        await anyio.sleep(FOLLOW_POLL_S)

    async for data in follow_log(path, offset, finished=finished, wake=wake):
        out.write(data.decode(errors="replace"))
        out.flush()


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


def list_entries(home: Path, out: IO[str], *, as_json: bool) -> int:
    store = CacheStore(home)
    entries = store.entries()
    store.close()
    if as_json:
        out.write(json.dumps([msgspec.to_builtins(e) for e in entries]) + "\n")
        return 0
    if not entries:
        out.write(f"the cache of {home} is empty\n")
        return 0
    now = time.time()
    for e in entries:
        outputs = " ".join(f"{k}={v}" for k, v in e.outputs.items()) or "-"
        out.write(
            f"{e.key[:16]}  run {e.run_id[:12]}  sweep {e.sweep_id[:12]}  "
            f"age {now - e.finished_at:,.0f}s  {outputs}\n"
        )
    return 0


def clear_entries(home: Path, out: IO[str], *, older_than: float | None) -> int:
    store = CacheStore(home)
    now = time.time()
    removed = 0
    for entry in store.entries():
        if older_than is None or now - entry.finished_at > older_than:
            store.delete(entry.key)
            removed += 1
    store.close()
    out.write(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}\n")
    return 0


def show_run(home: Path, ref: str, out: IO[str], *, as_json: bool) -> int:
    """``show SWEEP:INDEX`` / ``show --run RUN``: one run in full."""
    body = _ask(home, f"/api/v1/runs/{quote(ref, safe=':')}", {}, lambda j: run_detail(j, ref))
    if as_json:
        out.write(msgspec.json.encode(body).decode() + "\n")
        return 0
    reason = f" ({body['reason']})" if body["reason"] else ""
    out.write(
        f"run {body['run']} (sweep {body['sweep'][:12]}, #{body['index']}, "
        f"attempt {body['attempt']}) {body['state']}{reason}\n"
    )
    rows = [["command", shlex.join(body["argv"])], ["params", _pairs_of(body["params"])]]
    rows.append(["outputs", _pairs_of(body["outputs"]) or "-"])
    for name, summary in body["metrics"].items():
        rows.append(
            [
                f"metric {name}",
                f"last {_cell(summary['last'])}, min {_cell(summary['min'])}, "
                f"max {_cell(summary['max'])} ({plural(summary['reports'], 'report')})",
            ]
        )
    if body["place"]:
        rows.append(["search", " ".join(f"{k} {v}" for k, v in body["place"].items())])
    if body["resources"]:
        rows.append(["resources", json.dumps(body["resources"])])
    if (ran_on := placement_row(body.get("placement"))) is not None:
        rows.append(ran_on)
    rows += _provenance_rows(body["provenance"], body["env"])
    rows.append(["duration", format_duration(body["duration_s"])])
    for change in body["states"]:
        why = f" ({change['reason']})" if change["reason"] else ""
        rows.append([f"{_when(change['at'])}", f"{change['to']}{why}"])
    labels = {"run": "run folder", "outputs": "outputs folder"}
    rows += [[labels.get(name, name), path] for name, path in body["paths"].items()]
    width = max(len(label) for label, _ in rows)
    out.write("".join(f"  {label:<{width}}  {text}\n" for label, text in rows))
    return 0


def diff_runs(home: Path, left: str, right: str, out: IO[str], *, as_json: bool) -> int:
    """``diff RUN RUN``: what differs between two runs; exit 0 either way (like ``show``)."""
    body = _ask(
        home,
        f"/api/v1/runs/{quote(left, safe=':')}/diff",
        {"with": right},
        lambda j: run_diff(j, left, right),
    )
    if as_json:
        out.write(msgspec.json.encode(body).decode() + "\n")
        return 0
    a, b = (run[:12] for run in body["runs"])
    out.write(f"--- run {a}\n+++ run {b}\n")
    if "argv" in body:
        out.write(
            f"command\n  - {shlex.join(body['argv'][0])}\n  + {shlex.join(body['argv'][1])}\n"
        )
    for part in DIFFERED:
        for name, (mine, theirs) in body["differs"].get(part, {}).items():
            shown = ("-" if value is None else _cell(value) for value in (mine, theirs))
            out.write("{}.{}: {} → {}\n".format(part, name, *shown))
    if not body["differs"] and "argv" not in body:
        out.write("no differences\n")
    return 0


def _provenance_rows(made: dict[str, Any] | None, env: dict[str, str]) -> list[list[str]]:
    """Where a run ran, summarised (``--json`` has it whole: the diff, every package, the
    environment)."""
    if made is None:
        return [["provenance", "not recorded (a sweep from before it was)"]]
    code = "not a git repository"
    packages = plural(len((made["packages"] or "").splitlines()), "distribution")
    if not made["collected"]:  # only what was known at once (see history._provenance_of)
        code = packages = f"not recorded ({made['missing']})"
    elif made["git_commit"]:
        dirty = made["diff"] or ""
        lines = len(dirty.splitlines())
        code = f"git {made['git_commit'][:12]}" + (f", dirty ({lines} diff lines)" if dirty else "")
    environment = made["environment"] or {}
    return [
        ["code", code],
        ["python", f"{made['python']} ({made['python_version']})"],
        ["machine", f"{made['user'] or '?'}@{made['host']}, {made['platform'] or '?'}"],
        ["working folder", made["cwd"] or "?"],
        ["packages", packages],
        [
            "environment",
            f"{plural(len(environment), 'variable')}"
            + (f", and from its spec: {_pairs_of(env)}" if env else ""),
        ],
    ]


def _pairs_of(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_cell(v)}" for k, v in values.items())
