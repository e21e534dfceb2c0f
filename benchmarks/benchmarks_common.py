"""Helpers shared by the benchmarks: specs, timing a child with its peak RSS, interleaved
rounds, medians and the side-by-side table.

Every benchmark compares ours against its peers *in one invocation*: the variants of one
round run back to back (their order rotated each round, so none always goes first), and a
figure is the median over rounds. The machine is shared, so a single round means little; a
ratio (ours / the peer) is taken per round, where both saw the same load, then its median.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: Measure the orchestrator as installed: ``pip install`` compiles its bytecode, so a run
#: reads ``.pyc`` files. An environment that forbids writing them
#: (``PYTHONDONTWRITEBYTECODE``, set on some CI and sandbox machines) would have every timed
#: invocation compile all of its modules again: about 0.25 s per start on a 2-core machine,
#: 0.13 ms per run of a 2,000-run sweep that no user pays. The children the benchmarks time
#: inherit this environment; the package's bytecode is written once here.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
_ROOT = Path(__file__).resolve().parents[1]
compileall.compile_dir(_ROOT / "orchestrator", quiet=1)
compileall.compile_dir(_ROOT / "plugins", quiet=1)

__all__ = [
    "Measure",
    "Table",
    "home_places",
    "interleave",
    "median",
    "noop_spec",
    "ratio_median",
    "run_measured",
    "scratch",
]


def noop_spec(n: int) -> str:
    """A grid of ``n`` runs of ``/bin/true``: pure orchestration overhead."""
    return textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: grid, params: {{i: {{kind: range, value: "0:{n}:1"}}}}}}
        component:
          run: {{kind: job, container: {{command: [/bin/true]}}}}
    """)


@dataclass(frozen=True)
class Measure:
    """One timed thing: wall seconds and the peak RSS (KiB) of the largest process in its
    tree (0 when not measured)."""

    wall: float
    rss_kib: int = 0
    #: Any other figure the benchmark reports for it (rates, latencies), by name.
    extra: Mapping[str, float] = field(default_factory=dict)


#: GNU time: reports the peak RSS of the command it runs (``%M``, KiB), measured from a small
#: process. (A child forked from this Python process would report this process's RSS at
#: least: on ``exec`` Linux counts the high-water mark of the memory it leaves.)
GNU_TIME = "/usr/bin/time"


def run_measured(
    cmd: Sequence[str] | str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Measure:
    """Run ``cmd`` (a string: through ``/bin/sh -c``) to its end, output discarded: its wall
    time from spawn to reap, and the peak RSS of the largest single process among it and the
    descendants it waited for (for ``seq | xargs``: the biggest of them; for the
    orchestrator: itself, not its ``/bin/true`` runs). The RSS comes from GNU time when
    installed, else from ``os.wait4`` (then it is at least this process's own RSS). Raises
    if ``cmd`` fails."""
    argv: list[str] = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    timing = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        if timing:
            argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *argv]
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(max(0, err.seek(0, os.SEEK_END) - 2000))
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            shown = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
            raise RuntimeError(f"{shown[:200]} exited {code}: {' | '.join(tail)}")
        reported = rss.read().split()
    peak = int(reported[-1]) if timing and reported and reported[-1].isdigit() else 0
    return Measure(wall, peak or usage.ru_maxrss)


def interleave(
    variants: Mapping[str, Callable[[], Measure]],
    rounds: int,
    *,
    progress: bool = True,
) -> dict[str, list[Measure]]:
    """Run every variant once per round, the order rotated by one each round; each
    variant's measures, in round order."""
    names = list(variants)
    results: dict[str, list[Measure]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if progress:
                print(f"  round {r + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
            results[name].append(variants[name]())
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_median(ours: Sequence[Measure], peer: Sequence[Measure]) -> float:
    """The median over rounds of ``ours / peer`` wall time (both measured in the same round)."""
    return median([a.wall / b.wall for a, b in zip(ours, peer, strict=True)])


class Table:
    """A plain-text table: a title, a header row, right-aligned figures."""

    def __init__(self, title: str, columns: Sequence[str], first_width: int = 44) -> None:
        self.title = title
        self.columns = list(columns)
        self.first_width = first_width
        self.rows: list[list[str]] = []

    def add(self, name: str, *cells: str) -> None:
        self.rows.append([name, *cells])

    def render(self) -> str:
        widths = [self.first_width] + [
            max([len(c)] + [len(row[i + 1]) for row in self.rows if i + 1 < len(row)])
            for i, c in enumerate(self.columns[1:])
        ]
        lines = [self.title]

        def line(cells: Sequence[str]) -> str:
            first = f"{cells[0]:<{widths[0]}}"
            rest = [f"{cell:>{w}}" for cell, w in zip(cells[1:], widths[1:], strict=False)]
            return "  ".join([first, *rest]).rstrip()

        lines.append(line(self.columns))
        lines.extend(line(row) for row in self.rows)
        return "\n".join(lines)

    def print(self) -> None:
        print(self.render(), flush=True)


def home_places(base_disk: Path | None = None) -> dict[str, Path]:
    """Where a home folder can live for a benchmark: on disk (``base_disk``, default the
    current folder) and on tmpfs (``/dev/shm``, when it is there and writable)."""
    places = {"disk": base_disk or Path.cwd()}
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        places["tmpfs"] = shm
    return places


@contextmanager
def scratch(where: Path, prefix: str = "bench-") -> Iterator[Path]:
    """A temporary folder under ``where``, removed afterwards (even on failure)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
