"""A daemon's acceptance of a sweep without HTTP: ``SweepManager.submit`` awaited in-process, so
that changes of a tenth of a millisecond show through the noise the HTTP rows carry.

Each row is a fresh process with a fresh home that sets up a daemon's manager as ``orchestrator
daemon`` does (its journal, the installed plugins, :func:`~orchestrator.heap.settle_heap`
where the tree has it), warms up, then submits ``--requests`` open sweeps (no
runs: what accepting a sweep costs), one after another ("1 at a time") and then eight at once
(eight tasks, each submitting its share). It reports submissions per second and the CPU of the
main thread (the event loop, the serial part) per submission, and the same for the reference
in the same rounds: an INSERT committed with ``synchronous=FULL`` per submission, awaited from
the loop through a worker thread (the floor of any answer that means "durable").

``--tree PATH`` adds a row for another checkout (``PYTHONPATH=PATH``, ``PYTHONSAFEPATH=1``):
A/B in one invocation, rounds interleaved, medians of per-round figures.

Run: ``.venv/bin/python benchmarks/bench_submit.py [--tree /path/to/old] [--requests 800]
[--rounds 5]``, or ``--quick`` (200 requests, 1 round).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from benchmarks_common import Measure, Table, interleave, median

#: Both rows' timing: ``count`` calls of ``one()``, ``tasks`` at once; [per second, the loop
#: thread's CPU ms per call].
BATCH = textwrap.dedent("""
    import time
    import anyio

    async def batch(one, count, tasks):
        started, cpu = time.perf_counter(), time.thread_time()
        async def each(k):
            for _ in range(k):
                await one()
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(each, count // tasks)
        done = count // tasks * tasks
        return [done / (time.perf_counter() - started), (time.thread_time() - cpu) / done * 1e3]
""")

#: One row: prints a JSON line {"1": [rate, cpu_ms], "8": [rate, cpu_ms]} (one at a time, eight
#: at once: submissions per second, the loop thread's CPU ms per submission).
OURS = BATCH + textwrap.dedent("""
    import io, json, sys, tempfile, time
    from pathlib import Path
    import anyio
    from orchestrator.daemon.manager import Submission, SweepManager
    from orchestrator.engine.plugin_host import PluginHost
    from orchestrator.engine.recovery import open_journal
    from orchestrator.store.layout import ensure_home, journal_path

    SPEC = sys.argv[2]
    n = int(sys.argv[1])

    async def main():
        home = Path(tempfile.mkdtemp(prefix="bs-", dir=sys.argv[3]))
        ensure_home(home)
        journal = open_journal(journal_path(home), io.StringIO())
        manager = SweepManager(home, journal, max_runs=4, grace=1, publish=lambda e: None,
                               plugins=PluginHost.installed(io.StringIO()))
        try:
            from orchestrator.heap import settle_heap
        except ImportError:  # a tree from before it
            settle_heap = None
        if settle_heap is not None:
            settle_heap()
        async def one():
            await manager.submit(Submission(spec=SPEC, open=True))

        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            await batch(one, 20, 1)  # warm up: lazy imports, the first looks at the code
            out = {"1": await batch(one, n, 1), "8": await batch(one, n, 8)}
            await manager.shutdown(0.1)
            tg.cancel_scope.cancel()
        journal.close()
        print(json.dumps(out))

    anyio.run(main)
""")

#: The reference: a synced commit per submission, from the loop through a worker thread.
FLOOR = BATCH + textwrap.dedent("""
    import json, sqlite3, sys, tempfile, threading, time, uuid
    import anyio, anyio.to_thread
    n = int(sys.argv[1])
    folder = tempfile.mkdtemp(prefix="bs-", dir=sys.argv[3])
    db = sqlite3.connect(f"{folder}/s.sqlite", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE s (id TEXT, spec TEXT)")
    lock = threading.Lock()

    def commit(spec):
        with lock:
            db.execute("INSERT INTO s VALUES (?, ?)", (uuid.uuid4().hex, spec))

    async def one():
        await anyio.to_thread.run_sync(commit, sys.argv[2])

    async def main():
        await batch(one, 20, 1)
        print(json.dumps({"1": await batch(one, n, 1), "8": await batch(one, n, 8)}))

    anyio.run(main)
""")

OPEN = (
    "version: 1.1\nkind: operation\nmatrix: {kind: mapping, values: []}\n"
    "component:\n  run: {kind: job, container: {command: [/bin/true]}}\n"
)


def row(code: str, requests: int, tree: str | None = None) -> Measure:
    """One row's figures, from a fresh process (``tree``: that checkout's orchestrator)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree is not None:
        env |= {"PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as scratch:
        done = subprocess.run(
            [sys.executable, "-c", code, str(requests), OPEN, scratch],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"a row failed: {done.stderr[-1500:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Measure(
        0.0,
        0,
        {f"{key}{part}": figures[key][i] for key in figures for i, part in enumerate(("", " cpu"))},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests, 1 round")
    parser.add_argument("--requests", type=int, help="submissions per row and mode")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    parser.add_argument("--tree", help="also the checkout at TREE (A/B in one invocation)")
    args = parser.parse_args()
    requests = args.requests or (200 if args.quick else 800)
    rounds = args.rounds or (1 if args.quick else 5)
    rows = {
        "reference: a synced SQLite commit": lambda: row(FLOOR, requests),
        "ours: open sweep": lambda: row(OURS, requests),
    }
    if args.tree:
        rows["TREE: open sweep"] = lambda: row(OURS, requests, args.tree)
    results = interleave(rows, rounds)
    floor = results["reference: a synced SQLite commit"]
    table = Table(
        f"SweepManager.submit in-process, {requests} open sweeps per cell, median of {rounds} "
        "interleaved round(s); CPU: the event loop's thread, ms per submission",
        ["", "1 at a time /s", "vs ref", "CPU ms", "8 at once /s", "vs ref", "CPU ms"],
        first_width=36,
    )
    for name, measures in results.items():
        cells = []
        for key in ("1", "8"):
            cells.append(f"{median([m.extra[key] for m in measures]):.0f}")
            ratios = [m.extra[key] / f.extra[key] for m, f in zip(measures, floor, strict=True)]
            cells.append(f"{median(ratios):.0%}")
            cells.append(f"{median([m.extra[f'{key} cpu'] for m in measures]):.3f}")
        table.add(name, *cells)
    table.print()


if __name__ == "__main__":
    main()
