"""Orchestration overhead per run, side by side in one invocation: ours against ``xargs -P``,
GNU parallel, a bare asyncio loop and the floor prototypes, with the home on disk and on tmpfs.

N runs of ``/bin/true``, 8 at a time; every row is timed end to end (start-up included) with
the peak RSS of its largest process (``os.wait4``). Rounds are interleaved (every row once per
round, the order rotated) and the figures are medians over rounds; "vs xargs" is the median of
the per-round ratios, "ahead of parallel" counts the rounds where the row beat GNU parallel.

Rows:
- ``xargs -P 8``, ``GNU parallel -j 8``: the peers (``benchmarks/install-peers.sh``).
- ``bare asyncio``: ``asyncio.create_subprocess_exec`` with pipes under a Semaphore(8).
- ``floor: posix_spawn + pidfd``: the least a Python orchestrator can do (no files).
- ``floor + folder & 2 logs (HOME)``: the same, plus a folder and two log files per run in a
  home on disk or tmpfs: what a run that keeps its output costs on that file system.
- ``ours, plugins on|off (HOME)``: ``orchestrator run`` with the built-in plugins (cache and
  early stopping) or ``--no-plugin`` for both; a fresh home each time.
- ``ours, no provenance/usage (HOME)``: plugins on, with the sweep's provenance record (git,
  the installed distributions; once per invocation, in a worker thread) and each run's usage
  INSERT patched out: what issue 17's records cost. Below the table, the time ``collect``
  itself takes in this checkout.

Targets (issue 14): at 2,000 runs, plugins on, home on disk: <= 1.5x xargs (stretch 1.2x),
ahead of GNU parallel in every round (or, where the disk's file creation makes that
impossible even for the floor, within 10% of "floor + folder & 2 logs" on disk); ms/run at
50,000 within 10% of that at 2,000.

Run: ``.venv/bin/python benchmarks/bench_overhead.py``: 2,000 runs x 3 rounds, every row,
both homes; then 50,000 runs x 1 round of xargs, the floor with files and ours with plugins
on, home on disk (``--all-rows`` for every row): about 10 minutes in all on 2 cores. Or
``--quick`` (200 runs, 1 round, under a minute), or choose: ``--runs 2000 --rounds 5``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

from benchmarks_common import (
    Measure,
    Table,
    home_places,
    interleave,
    median,
    noop_spec,
    ratio_median,
    run_measured,
    scratch,
)

CONCURRENCY = 8
#: Above this many runs a round takes minutes: one round, home on disk only, by default.
BIG = 10_000

ASYNCIO_BARE = textwrap.dedent("""
    import asyncio, subprocess, sys
    async def main(n, cmd, limit):
        sem = asyncio.Semaphore(limit)
        async def one():
            async with sem:
                p = await asyncio.create_subprocess_exec(cmd, stdout=subprocess.PIPE,
                                                         stderr=subprocess.PIPE)
                await p.communicate()
        await asyncio.gather(*(one() for _ in range(n)))
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
""")

#: posix_spawn + pidfd + epoll, ``limit`` at a time; with a home, each run gets a folder and
#: its stdout/stderr go to two log files there (opened by the spawn's file actions).
FLOOR = textwrap.dedent("""
    import os, select, sys
    n, cmd, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    home = sys.argv[4] if len(sys.argv) > 4 else None
    ep, running, started = select.epoll(), {}, 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    def spawn(i):
        if home is None:
            acts = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        else:
            d = os.path.join(home, str(i))
            os.mkdir(d)
            acts = [(os.POSIX_SPAWN_OPEN, 1, d + "/stdout.log", flags, 0o644),
                    (os.POSIX_SPAWN_OPEN, 2, d + "/stderr.log", flags, 0o644)]
        pid = os.posix_spawn(cmd, [cmd], os.environ, file_actions=acts, setpgroup=0)
        fd = os.pidfd_open(pid)
        ep.register(fd, select.EPOLLIN)
        running[fd] = pid
    while started < n or running:
        while started < n and len(running) < limit:
            spawn(started)
            started += 1
        for fd, _ in ep.poll():
            ep.unregister(fd)
            os.waitpid(running.pop(fd), 0)
            os.close(fd)
""")

#: ``orchestrator`` with the provenance record and the per-run usage row patched out.
WITHOUT_RECORDS = textwrap.dedent("""
    import runpy, sys
    from orchestrator.engine.sweep import SweepController
    from orchestrator.store.journal import Journal
    async def no_provenance(self, at, done):
        done.set()
    SweepController._record_provenance = no_provenance
    Journal.set_usage = lambda self, *args, **kwargs: None
    sys.argv[0] = "orchestrator"
    runpy.run_module("orchestrator", run_name="__main__", alter_sys=True)
""")


def _peers(n: int, true: str) -> dict[str, Callable[[], Measure]]:
    py = sys.executable
    rows: dict[str, Callable[[], Measure]] = {
        "xargs -P 8": lambda: run_measured(f"seq {n} | xargs -P {CONCURRENCY} -n 1 {true}"),
    }
    if shutil.which("parallel"):
        rows["GNU parallel -j 8"] = lambda: run_measured(
            f"seq {n} | parallel --will-cite -j {CONCURRENCY} {true}"
        )
    else:
        print("GNU parallel not installed: run benchmarks/install-peers.sh", file=sys.stderr)
    rows["bare asyncio (create_subprocess_exec)"] = lambda: run_measured(
        [py, "-c", ASYNCIO_BARE, str(n), true, str(CONCURRENCY)]
    )
    rows["floor: posix_spawn + pidfd"] = lambda: run_measured(
        [py, "-c", FLOOR, str(n), true, str(CONCURRENCY)]
    )
    return rows


def _in_place(base: Path, n: int, true: str, place: str) -> dict[str, Callable[[], Measure]]:
    """The rows that need a home: the floor with files, ours with plugins on and off. Homes
    stay until every round is done (``scratch`` removes them): on an ext4 without a journal,
    creating a folder right after thousands were deleted is slower, and a round's ``rm -rf``
    would be measured in the next round's ``mkdir``."""
    spec = base / "noop.yaml"
    spec.write_text(noop_spec(n))
    py = sys.executable

    def fresh(kind: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=base))

    def floor_files() -> Measure:
        home = fresh("floor")
        return run_measured([py, "-c", FLOOR, str(n), true, str(CONCURRENCY), str(home)])

    def ours(plugins: bool, records: bool = True) -> Callable[[], Measure]:
        off = [] if plugins else ["--no-plugin", "cache", "--no-plugin", "early_stopping"]
        launch = ["-m", "orchestrator"] if records else ["-c", WITHOUT_RECORDS]

        def once() -> Measure:
            return run_measured(
                [py, *launch, "run", str(spec), "--concurrency",
                 str(CONCURRENCY), "--home", str(fresh("home")), "--json", *off],
                cwd=base,
            )  # fmt: skip

        return once

    return {
        f"floor + folder & 2 logs ({place})": floor_files,
        f"ours, plugins on ({place})": ours(True),
        f"ours, plugins off ({place})": ours(False),
        f"ours, no provenance/usage ({place})": ours(True, records=False),
    }


def provenance_ms(rounds: int = 5) -> float:
    """Median milliseconds of one provenance record of this checkout (git status, diff and
    the installed distributions), as a sweep collects it once per invocation."""
    import os
    import time

    from orchestrator.provenance import collect

    folder = Path(__file__).resolve().parent
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        collect(folder, dict(os.environ))
        times.append(time.perf_counter() - start)
    return median(times) * 1000


#: The rows run above BIG by default: what the "ms/run at 50,000 vs 2,000" target needs.
BIG_ROWS = ("xargs -P 8", "floor + folder & 2 logs (disk)", "ours, plugins on (disk)")


def bench(
    n: int, rounds: int, places: dict[str, Path], only: tuple[str, ...] | None = None
) -> dict[str, list[Measure]]:
    true = shutil.which("true") or "/bin/true"
    variants = _peers(n, true)
    with contextlib.ExitStack() as stack:
        for place, where in places.items():
            base = stack.enter_context(scratch(where, prefix="bench-overhead-"))
            variants.update(_in_place(base, n, true, place))
        if only is not None:
            variants = {k: v for k, v in variants.items() if k in only}
        results = interleave(variants, rounds)
    table = Table(
        f"{n:,} runs of /bin/true, {CONCURRENCY} at a time: median of {rounds} interleaved "
        f"round(s)",
        ["", "total s", "ms/run", "vs xargs", "ahead of parallel", "peak RSS MB"],
    )
    xargs = results["xargs -P 8"]  # always run
    parallel = results.get("GNU parallel -j 8")
    for name, measures in results.items():
        wall = median([m.wall for m in measures])
        ahead = (
            f"{sum(a.wall < b.wall for a, b in zip(measures, parallel, strict=True))}/{rounds}"
            if parallel is not None and measures is not parallel
            else "-"
        )
        table.add(
            name,
            f"{wall:.3f}",
            f"{wall / n * 1000:.3f}",
            f"{ratio_median(measures, xargs):.2f}x",
            ahead,
            f"{median([m.rss_kib for m in measures]) / 1024:.1f}",
        )
    table.print()
    print(
        f"provenance record, once per sweep invocation in a worker thread: "
        f"{provenance_ms():.0f} ms (median of 5, this checkout)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 runs, 1 round (development)")
    parser.add_argument("--runs", type=int, nargs="+", help="run counts (default 2000 50000)")
    parser.add_argument("--rounds", type=int, help=f"rounds per count (default 3; 1 over {BIG})")
    parser.add_argument(
        "--places", help=f"homes: disk,tmpfs (default both; disk only over {BIG} runs)"
    )
    parser.add_argument("--disk", type=Path, help="folder on disk for homes (default: $TMPDIR)")
    parser.add_argument(
        "--all-rows", action="store_true", help=f"every row over {BIG} runs too (hours)"
    )
    args = parser.parse_args()
    counts = args.runs or ([200] if args.quick else [2000, 50_000])
    available = home_places(args.disk or Path(tempfile.gettempdir()))
    per_n: dict[int, dict[str, list[Measure]]] = {}
    for n in counts:
        rounds = args.rounds or (1 if args.quick or n > BIG else 3)
        wanted = args.places.split(",") if args.places else (["disk"] if n > BIG else None)
        places = {k: v for k, v in available.items() if wanted is None or k in wanted}
        only = BIG_ROWS if n > BIG and not args.all_rows else None
        per_n[n] = bench(n, rounds, places, only)
        print()
    if len(per_n) > 1:
        key = "ours, plugins on (disk)"
        small, big = min(per_n), max(per_n)
        a = median([m.wall for m in per_n[small][key]]) / small
        b = median([m.wall for m in per_n[big][key]]) / big
        print(f"{key}: {b * 1000:.3f} ms/run at {big:,}, {a * 1000:.3f} at {small:,}: {b / a:.2f}x")


if __name__ == "__main__":
    main()
