"""Joins at scale: "the 5 best succeeded runs by metrics.loss" over one big sweep.

Builds one journal per size (10k, 50k runs; ``--quick``: 2k, 10k) through a fast path: the
journal's own schema and ``add_sweep``, then the runs (one in ten retried once, so the newest
attempt must be picked; one in twenty failed) and two metric reports each inserted in bulk.
Then times, rounds interleaved, ``resolve_joins`` (filter, sort and page done by SQLite)
against the reference a join without SQL would be: every configuration's newest run and its
last metrics read into Python (``Journal.latest_runs`` + ``last_metrics``), filtered and sorted
there. Prints the median wall time and the peak Python memory (tracemalloc) of each.

Run: ``.venv/bin/python benchmarks/bench_join_query.py [--quick] [--rounds N]``
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.spec import models as m
from orchestrator.store.join_query import resolve_joins
from orchestrator.store.journal import Journal

SWEEP = "b" * 32
JOIN = m.Join(
    query="status:succeeded",
    sort="metrics.loss",
    limit=5,
    params={"lrs": m.Param(value="inputs.lr")},
)


def build(path: Path, runs: int) -> None:
    journal = Journal(path)
    journal.add_sweep(
        SWEEP, name="big", description=None, tags=[], spec_path="x", kind="grid",
        total=runs, concurrency=8, pid=os.getpid(), seed=None,
    )  # fmt: skip
    journal.close()
    rows, metrics = [], []
    for i in range(runs):
        attempts = 2 if i % 10 == 0 else 1
        for attempt in range(attempts):
            run_id = f"{i:024d}{attempt:08d}"
            state = "failed" if i % 20 == 0 and attempt == attempts - 1 else "succeeded"
            params = json.dumps({"lr": i / runs, "layers": i % 7})
            rows.append((run_id, SWEEP, i, params, state, float(attempt), f"h{i}"))
            loss = ((i * 7919) % runs) / runs
            metrics += [(run_id, loss + 1), (run_id, loss)]
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO runs (id, sweep_id, idx, params, argv, state, created_at, params_hash) "
            "VALUES (?, ?, ?, ?, '[]', ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, 'loss', 0, ?, 0)",
            metrics,
        )
    db.close()


def ours(journal: Journal) -> list[Any]:
    return list(resolve_joins(journal, [SWEEP], [JOIN], {SWEEP: "big"})["lrs"].value)


def reference(journal: Journal) -> list[Any]:
    runs = [r for r in journal.latest_runs(SWEEP) if r.state == "succeeded"]
    last = journal.last_metrics([r.id for r in runs])
    runs.sort(key=lambda r: (last.get(r.id, {}).get("loss") is None, last[r.id]["loss"], r.idx))
    return [r.params.get("lr") for r in runs[:5]]


def measure(fn: Callable[[Journal], list[Any]], journal: Journal) -> tuple[float, int, list[Any]]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = fn(journal)
        return time.perf_counter() - start, tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [2_000, 10_000] if args.quick else [10_000, 50_000]
    with tempfile.TemporaryDirectory() as tmp:
        journals = {}
        for size in sizes:
            path = Path(tmp) / f"{size}" / "journal.sqlite"
            path.parent.mkdir()
            build(path, size)
            journals[size] = Journal(path)
        times: dict[tuple[int, str], list[float]] = {}
        peaks: dict[tuple[int, str], int] = {}
        for _ in range(args.rounds):
            for size, journal in journals.items():
                answers = []
                for name, fn in (("ours", ours), ("reference", reference)):
                    wall, peak, answer = measure(fn, journal)
                    times.setdefault((size, name), []).append(wall)
                    peaks[(size, name)] = max(peaks.get((size, name), 0), peak)
                    answers.append(answer)
                assert answers[0] == answers[1], answers
        print(f"{'runs':>7} {'how':<10} {'median s':>9} {'peak MiB':>9}")
        for (size, name), walls in times.items():
            mib = peaks[(size, name)] / 2**20
            print(f"{size:>7} {name:<10} {statistics.median(walls):>9.3f} {mib:>9.1f}")
        for journal in journals.values():
            journal.close()


if __name__ == "__main__":
    main()
