"""Orchestration overhead per run, side by side: us vs xargs -P, GNU parallel, plain asyncio.

N no-op runs (``/bin/true``), 8 at a time, each tool timed end to end (start-up included), the
median of REPEAT runs. Targets: within 1.5x of ``xargs -P`` and ahead of GNU parallel.
Ours runs twice: with the built-in plugins (the cache: a key and an entry per run) and
without (``--no-plugin cache``), which is what the event bus and plugins cost. Install the
peers with
``benchmarks/install-peers.sh``.

Run: ``.venv/bin/python benchmarks/bench_overhead.py [N] [REPEAT]``
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks_common import noop_spec

ASYNCIO_ANCHOR = textwrap.dedent("""
    import asyncio, subprocess, sys
    async def main(n, cmd):
        sem = asyncio.Semaphore(8)
        async def one():
            async with sem:
                p = await asyncio.create_subprocess_exec(cmd, stdout=subprocess.PIPE,
                                                         stderr=subprocess.PIPE)
                await p.communicate()
        await asyncio.gather(*(one() for _ in range(n)))
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
""")


def timed(cmd: str | list[str], repeat: int, *, shell: bool = False) -> float:
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            cmd, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    true = shutil.which("true") or "/bin/true"
    rows: list[tuple[str, float]] = []
    rows.append(("xargs -P 8", timed(f"seq {n} | xargs -P 8 -n 1 {true}", repeat, shell=True)))
    if shutil.which("parallel"):
        rows.append(
            (
                "GNU parallel -j 8",
                timed(f"seq {n} | parallel --will-cite -j 8 {true}", repeat, shell=True),
            )
        )
    else:
        print("GNU parallel not installed: run benchmarks/install-peers.sh", file=sys.stderr)
    rows.append(
        (
            "asyncio + Semaphore(8)",
            timed([sys.executable, "-c", ASYNCIO_ANCHOR, str(n), true], repeat),
        )
    )
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        path = Path(tmp) / "noop.yaml"
        path.write_text(noop_spec(n))
        variants = {
            "orchestrator, built-in plugins on": [],
            "orchestrator, plugins off": ["--no-plugin", "cache"],
        }
        for label, extra in variants.items():
            walls = []
            for i in range(repeat):
                home = Path(tmp) / f"home-{len(rows)}-{i}"
                cmd = [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    str(path),
                    "--concurrency",
                    "8",
                    "--home",
                    str(home),
                    "--json",
                    *extra,
                ]
                walls.append(timed(cmd, 1))
            rows.append((label, statistics.median(walls)))
    base = rows[0][1]
    print(f"{n} no-op runs, 8 at a time, median of {repeat}")
    print(f"{'tool':<40} {'total s':>8} {'ms/run':>8} {'vs xargs':>9}")
    for name, wall in rows:
        print(f"{name:<40} {wall:>8.3f} {wall / n * 1000:>8.3f} {wall / base:>8.2f}x")


if __name__ == "__main__":
    main()
