"""Run every benchmark, one after another, each printing its table of ours against its peers.

``--quick`` passes ``--quick`` to each (development: a few minutes in all); without it each
runs in its full form (the figures for a release note: most of an hour on 2 cores). A
benchmark that fails is reported and the others still run; the exit code says whether all
passed. ``--only overhead,daemon`` runs a subset (names without ``bench_``).

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--only NAMES]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: In the order they run: cheap and independent first.
BENCHMARKS = [
    "overhead",
    "rerun",
    "journal",
    "early_stop",
    "logs",
    "history",
    "plan",
    "daemon",
    "submit",
    "search",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick")
    parser.add_argument("--only", help="comma-separated names, e.g. overhead,daemon")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BENCHMARKS
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"== {name}: no {script.name}, skipped", flush=True)
            continue
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *(["--quick"] if args.quick else [])])
        print(f"== {name}: exit {code}, {time.perf_counter() - started:.0f} s\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
