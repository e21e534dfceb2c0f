"""The web page's reads on a big sweep: ``GET /api/v1/sweeps`` and a sweep's metric series,
against a bare ``SELECT`` of the same rows, measured in the same invocation.

The home holds one finished sweep of 10,000 runs x 100 reports (``loss`` and ``acc`` each:
2,000,000 metric rows; ``--quick``: 1,000 runs), written through the journal's own writer
(``Journal.add_run``, ``record_transition``, ``add_metrics``, as a sweep writes them), with a
spec file whose ``earlyStopping`` rule names ``loss`` (so the list computes the best run). A
daemon serves that home; a client on its Unix socket (httpx, keep-alive) times each request,
the answer read in full. Rows, each with its reference (the same process, its own SQLite
connection, rows fetched with ``fetchall``, nothing encoded):

- ``GET /sweeps`` (counts, done, objective, best, live): the sweep rows plus the state of
  every run (what the counts are made of);
- ``GET /sweeps/ID/metrics?names=loss`` (1,000,000 points, none thinned out at the default
  ``max_points`` 1,000) and ``...&max_points=10``: every ``loss`` row of the table;
- ``GET /sweeps/ID/metrics/names``: ``SELECT DISTINCT name FROM metrics``;
- ``GET /runs/ID/metrics``: that run's rows.

Rounds interleave the rows; the figures are p50 and p95 over every request of every round.
The first ``GET /sweeps`` (which loads the spec and reads the best run; later ones find both
remembered, the sweep being finished) is reported apart.

Run: ``.venv/bin/python benchmarks/bench_web_api.py [--quick] [--rounds N] [--requests N]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from benchmarks_common import Measure, Table, interleave

from orchestrator.diagnostics import is_ready_record

SWEEP = "b" * 32
REPORTS = 100
SPEC = """version: 1.1
kind: operation
matrix:
  kind: mapping
  values: [{i: 0}]
  earlyStopping: [{kind: metric_early_stopping, metric: loss, value: -1, optimization: minimize}]
component:
  inputs: [{name: i, type: int}]
  run: {kind: job, container: {command: [/bin/true]}}
"""


def run_id(index: int) -> str:
    return hashlib.sha256(f"run-{index}".encode()).hexdigest()[:32]


def build_home(home: Path, runs: int) -> Path:
    """One finished sweep of ``runs`` runs x :data:`REPORTS` reports, through the writer."""
    from orchestrator.store.journal import Journal
    from orchestrator.store.layout import ensure_home, journal_path

    ensure_home(home)
    spec = home / "spec.yaml"
    spec.write_text(SPEC)
    journal = Journal(journal_path(home))
    journal.add_sweep(
        SWEEP,
        name="bench",
        description=None,
        tags=[],
        spec_path=str(spec),
        kind="mapping",
        total=runs,
        concurrency=8,
        pid=1,
        seed=None,
    )
    journal.set_sweep_state(SWEEP, "running", None, finished=False)
    for index in range(runs):
        rid, params = run_id(index), json.dumps({"i": index})
        params_hash = hashlib.sha256(params.encode()).hexdigest()
        journal.add_run(rid, SWEEP, index, "c", params, "[]", str(home / rid), params_hash)
        previous = "created"
        for state in ("queued", "starting", "running"):
            journal.record_transition(SWEEP, rid, previous, state, None, None, 1)
            previous = state
        for step in range(REPORTS):
            loss = 1.0 / (step + 1) + index / runs
            journal.add_metrics(rid, step, {"loss": loss, "acc": step / REPORTS})
        journal.record_transition(SWEEP, rid, previous, "succeeded", None, 0, 1, finished=True)
    journal.set_sweep_state(SWEEP, "succeeded", None, finished=True)
    journal.flush_sync()
    journal.close()
    return journal_path(home)


def start_daemon(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if is_ready_record(line):
            return proc
    raise RuntimeError(f"the daemon did not start: {proc.wait()}")


def timed(call: Callable[[], object], samples: list[float], requests: int) -> Callable[[], Measure]:
    def measure() -> Measure:
        start = time.perf_counter()
        for _ in range(requests):
            began = time.perf_counter()
            call()
            samples.append(time.perf_counter() - began)
        return Measure((time.perf_counter() - start) / requests)

    return measure


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=5, help="requests per row and round")
    args = parser.parse_args()
    runs = 1_000 if args.quick else 10_000
    rounds = args.rounds or (1 if args.quick else 3)
    home = Path(tempfile.mkdtemp(prefix="bench-web-", dir="/tmp"))
    began = time.perf_counter()
    path = build_home(home, runs)
    print(
        f"journal of {runs:,} runs x {REPORTS} reports written in "
        f"{time.perf_counter() - began:.1f}s ({path.stat().st_size / 2**20:.0f} MiB)",
        file=sys.stderr,
    )
    proc = start_daemon(home)
    info = json.loads((home / "daemon" / "daemon.json").read_text())
    client = httpx.Client(
        transport=httpx.HTTPTransport(uds=info["socket"]),
        base_url="http://daemon/api/v1",
        timeout=httpx.Timeout(120),
    )
    conn = sqlite3.connect(path)
    try:
        first = time.perf_counter()
        listed = client.get("/sweeps").json()
        cold = time.perf_counter() - first
        assert listed[0]["best"]["index"] == 0, listed[0]

        def get(url: str) -> Callable[[], object]:
            def call() -> object:
                answer = client.get(url)
                answer.raise_for_status()
                return answer.content

            return call

        def select(sql: str, *params: object) -> Callable[[], object]:
            return lambda: conn.execute(sql, params).fetchall()

        counts = "SELECT id, state FROM runs WHERE sweep_id = ?"
        every_loss = "SELECT run_id, step, value FROM metrics WHERE name = 'loss'"
        rows: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "GET /sweeps": (
                get("/sweeps"),
                lambda: (
                    conn.execute("SELECT * FROM sweeps ORDER BY created_at DESC").fetchall(),
                    conn.execute(counts, (SWEEP,)).fetchall(),
                ),
            ),
            "GET /sweeps/ID/metrics?names=loss": (
                get(f"/sweeps/{SWEEP}/metrics?names=loss"),
                select(every_loss),
            ),
            "GET /sweeps/ID/metrics?names=loss&max_points=10": (
                get(f"/sweeps/{SWEEP}/metrics?names=loss&max_points=10"),
                select(every_loss),
            ),
            "GET /sweeps/ID/metrics/names": (
                get(f"/sweeps/{SWEEP}/metrics/names"),
                select("SELECT DISTINCT name FROM metrics"),
            ),
            "GET /runs/ID/metrics": (
                get(f"/runs/{run_id(runs // 2)}/metrics"),
                select("SELECT name, step, value FROM metrics WHERE run_id = ?", run_id(runs // 2)),
            ),
        }
        samples: dict[str, list[float]] = {}
        variants: dict[str, Callable[[], Measure]] = {}
        for name, (ours, bare) in rows.items():
            for kind, call in (("ours", ours), ("bare", bare)):
                samples[f"{name}|{kind}"] = []
                variants[f"{name}|{kind}"] = timed(call, samples[f"{name}|{kind}"], args.requests)
        interleave(variants, rounds)
        table = Table(
            f"web API reads: {runs:,} runs x {REPORTS} reports ({rounds} rounds x "
            f"{args.requests} requests; seconds)",
            ["request", "p50", "p95", "bare p50", "bare p95", "p50 / bare"],
            first_width=48,
        )
        for name in rows:
            ours_s, bare_s = samples[f"{name}|ours"], samples[f"{name}|bare"]
            p50, bare50 = statistics.median(ours_s), statistics.median(bare_s)
            table.add(
                name,
                f"{p50:.3f}",
                f"{quantile(ours_s, 0.95):.3f}",
                f"{bare50:.3f}",
                f"{quantile(bare_s, 0.95):.3f}",
                f"{p50 / bare50:.1f}x",
            )
        table.add("first GET /sweeps (spec loaded, best read)", f"{cold:.3f}")
        table.print()
    finally:
        conn.close()
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
