"""A sweep run again once every configuration is done: ours, where every run is a cache hit,
against GNU parallel skipping the jobs its joblog records as done, in one invocation.

N runs of ``/bin/true``, 8 at a time. Each row is timed end to end (start-up included), on a
home (or joblog) where the same N already ran; rounds are interleaved, figures are medians.

Rows:
- ``xargs -P 8, all again``: what running everything again costs (the reference).
- ``GNU parallel --resume``: ``parallel --joblog LOG --resume`` after a full run: it reads
  the joblog and starts nothing (the peer's way to skip finished jobs).
- ``ours, run again``: ``orchestrator run`` of the same spec in the same home: the built-in
  cache (on by default for a matrix) answers every run; each ends ``succeeded``
  (``cache_hit``) with the earlier run's outputs, metrics and logs, and is journaled.
- ``ours, run again (--tree)``: the same with another checkout's orchestrator (``--tree
  PATH``, on ``PYTHONPATH``): before/after figures from one invocation.

The first (full) run of each home is made before the rounds and not timed.

Run: ``.venv/bin/python benchmarks/bench_rerun.py`` (2,000 runs x 3 rounds), ``--quick``
(200 x 1), ``--runs N --rounds R``, ``--tree PATH``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks_common import (
    Measure,
    Table,
    interleave,
    median,
    noop_spec,
    ratio_median,
    run_measured,
    scratch,
)

CONCURRENCY = 8


def _ours(spec: Path, home: Path, env: dict[str, str]) -> Callable[[], Measure]:
    """``orchestrator run`` of ``spec`` in ``home``: run once untimed, then timed each call."""
    argv = [
        sys.executable, "-m", "orchestrator", "run", str(spec),
        "--concurrency", str(CONCURRENCY), "--home", str(home), "--json",
    ]  # fmt: skip
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return lambda: run_measured(argv, env=env, cwd=spec.parent)


def bench(n: int, rounds: int, tree: str | None) -> dict[str, list[Measure]]:
    true = shutil.which("true") or "/bin/true"
    with scratch(Path(os.environ.get("TMPDIR", "/tmp")), prefix="bench-rerun-") as base:
        spec = base / "noop.yaml"
        spec.write_text(noop_spec(n))
        env = {**os.environ}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # start-up as a user's, with bytecode
        rows: dict[str, Callable[[], Measure]] = {
            "xargs -P 8, all again": lambda: run_measured(
                f"seq {n} | xargs -P {CONCURRENCY} -n 1 {true}"
            ),
        }
        if shutil.which("parallel"):
            log = base / "joblog"
            command = f"seq {n} | parallel --will-cite -j {CONCURRENCY} --joblog {log}"
            run_measured(f"{command} {true}")
            rows["GNU parallel --resume"] = lambda: run_measured(f"{command} --resume {true}")
        else:
            print("GNU parallel not installed: run benchmarks/install-peers.sh", file=sys.stderr)
        rows["ours, run again"] = _ours(spec, base / "home", env)
        if tree is not None:
            other = {**env, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}
            rows["ours, run again (--tree)"] = _ours(spec, base / "home-tree", other)
        results = interleave(rows, rounds)
    table = Table(
        f"{n:,} runs of /bin/true already done, run again {CONCURRENCY} at a time: median of "
        f"{rounds} interleaved round(s)",
        ["", "total s", "ms/run", "vs xargs (all again)", "peak RSS MB"],
    )
    xargs = results["xargs -P 8, all again"]
    for name, measures in results.items():
        wall = median([m.wall for m in measures])
        table.add(
            name,
            f"{wall:.3f}",
            f"{wall / n * 1000:.3f}",
            f"{ratio_median(measures, xargs):.2f}x",
            f"{median([m.rss_kib for m in measures]) / 1024:.1f}",
        )
    table.print()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs, 1 round")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", help="another checkout (PYTHONPATH) run again alongside")
    args = parser.parse_args()
    n, rounds = (200, 1) if args.quick else (args.runs, args.rounds)
    bench(n, rounds, args.tree)


if __name__ == "__main__":
    main()
