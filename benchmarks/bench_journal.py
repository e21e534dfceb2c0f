"""Journal cost: transitions per second, and a no-op sweep with the home on tmpfs vs disk.

1. ``Journal.record_transition`` N times then ``flush``: the caller's cost per transition (a
   queue put) and the committed throughput (one writer thread, batched transactions, WAL).
2. The overhead sweep of ``bench_overhead.py`` (N no-op runs, 8 at a time) with the home folder
   on /dev/shm (tmpfs) and in the current folder (the default's disk), side by side.

Run: ``.venv/bin/python benchmarks/bench_journal.py [TRANSITIONS] [RUNS]`` (default 100,000
and 1,000, 3 sweeps per home), or ``--quick`` (10,000 and 200, one sweep per home).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks_common import noop_spec

from orchestrator.store.journal import Journal


def transitions(n: int, base: Path) -> tuple[float, float]:
    journal = Journal(base / "journal.sqlite")
    sweep = uuid.uuid4().hex
    runs = [uuid.uuid4().hex for _ in range(100)]
    started = time.perf_counter()
    for i in range(n):
        journal.record_transition(sweep, runs[i % 100], "running", "succeeded", None, 0, 1)
    queued = time.perf_counter() - started
    journal.flush_sync()
    total = time.perf_counter() - started
    journal.close()
    return queued / n * 1e6, n / total


def sweep_seconds(runs: int, base: Path, repeat: int = 3) -> float:
    spec = base / "noop.yaml"
    spec.write_text(noop_spec(runs))
    walls = []
    for i in range(repeat):
        home = base / f"home{i}"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                str(spec),
                "--concurrency",
                "8",
                "--home",
                str(home),
                "--json",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("transitions", type=int, nargs="?")
    parser.add_argument("runs", type=int, nargs="?")
    parser.add_argument("--quick", action="store_true", help="10,000 transitions, 200 runs")
    args = parser.parse_args()
    n = args.transitions or (10_000 if args.quick else 100_000)
    runs = args.runs or (200 if args.quick else 1000)
    repeat = 1 if args.quick else 3
    places = {"tmpfs (/dev/shm)": Path("/dev/shm"), "disk (current folder)": Path.cwd()}
    print(
        f"{'home':<24} {'enqueue us/transition':>22} {'committed transitions/s':>24} "
        f"{f'{runs} no-op runs, s':>18} {'ms/run':>8}"
    )
    for label, where in places.items():
        if not where.is_dir():
            continue
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            per_call, rate = transitions(n, Path(tmp))
            wall = sweep_seconds(runs, Path(tmp), repeat)
        print(
            f"{label:<24} {per_call:>22.2f} {rate:>24,.0f} {wall:>18.3f} {wall / runs * 1000:>8.3f}"
        )


if __name__ == "__main__":
    main()
