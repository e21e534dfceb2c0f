"""The Dask executor against the local one, side by side in one invocation: per-run overhead
and line latency.

A ``LocalCluster`` (2 worker processes x 4 threads, loopback, no dashboard) is started once;
each measure opens its own client (not timed) and drives the executor directly (no journal,
no engine), so the figures are the executors' own:

- ``overhead, 8 in flight``: N runs of ``/bin/true``, 8 at a time; wall / N. Dask adds a task
  submission, the claim (two scheduler round trips), a message to the worker's supervisor
  (one per worker process, started by its first run: no Python start per run) and the
  messages back.
- ``one run alone, start to end``: M runs of ``/bin/true`` one after the other; wall / M.
- ``line latency``: a child prints 500 lines 5 ms apart, each carrying ``time.time()``; the
  sink subtracts it on receipt (same machine, same clock): median, p95 and max.

Rounds are interleaved (the order rotated each round), figures are medians over rounds.

Run: ``.venv/bin/python benchmarks/bench_dask.py`` (N 200, M 20, 3 rounds, about a minute) or
``--quick`` (N 50, M 5, 1 round). Needs the dask extra.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from benchmarks_common import Measure, Table, interleave, median

from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.local import LocalExecutor
from orchestrator.store.layout import RunLayout

IN_FLIGHT = 8
LATENCY_LINES = 500
CHILD = (
    "import time\n"
    f"for i in range({LATENCY_LINES}):\n"
    "    print(repr(time.time()), flush=True)\n"
    "    time.sleep(0.005)\n"
)


class _Stamps(LineSink):
    """Receipt delay of each line that carries its print time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def line(self, stream: str, text: str) -> None:
        now = time.time()
        if stream == "stdout":
            self.delays.append(now - float(text))


async def _nothing(pid: int | None) -> None:
    return None


def _job(home: Path, index: int, argv: list[str]) -> Job:
    run_id = f"bench-{index}-{os.urandom(4).hex()}"
    return Job(run_id, index, argv, dict(os.environ), home, RunLayout(home, run_id))


Execute = Callable[[Job, LineSink], Awaitable[Outcome]]


async def _with_executor(
    kind: str, address: str, home: Path, body: Callable[[Execute], Awaitable[Measure]]
) -> Measure:
    """Run ``body`` with an ``execute(job, sink)`` of the ``kind`` executor (a Dask client is
    opened first, untimed)."""
    if kind == "local":
        local = LocalExecutor(home)
        return await body(lambda job, sink: local.execute(job, sink, StopRequest(), _nothing))
    from orchestrator.executors.dask_executor import DaskCluster

    async with DaskCluster(address) as cluster:
        dask = cluster.executor()
        return await body(lambda job, sink: dask.execute(job, sink, StopRequest(), _nothing))


def _overhead(runs: int, home: Path) -> Callable[[Execute], Awaitable[Measure]]:
    async def body(execute: Execute) -> Measure:
        limiter = anyio.CapacityLimiter(IN_FLIGHT)

        async def one(index: int) -> None:
            async with limiter:
                outcome = await execute(_job(home, index, ["/bin/true"]), _Stamps())
                assert outcome.exit_code == 0, outcome

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(runs):
                tg.start_soon(one, index)
        return Measure(time.perf_counter() - started)

    return body


def _lone(runs: int, home: Path) -> Callable[[Execute], Awaitable[Measure]]:
    async def body(execute: Execute) -> Measure:
        started = time.perf_counter()
        for index in range(runs):
            outcome = await execute(_job(home, index, ["/bin/true"]), _Stamps())
            assert outcome.exit_code == 0, outcome
        return Measure(time.perf_counter() - started)

    return body


def _latency(home: Path) -> Callable[[Execute], Awaitable[Measure]]:
    async def body(execute: Execute) -> Measure:
        sink = _Stamps()
        started = time.perf_counter()
        outcome = await execute(_job(home, 0, [sys.executable, "-c", CHILD]), sink)
        assert outcome.exit_code == 0 and len(sink.delays) == LATENCY_LINES, outcome
        delays = sorted(sink.delays)
        extra = {
            "median": statistics.median(delays) * 1e3,
            "p95": delays[int(len(delays) * 0.95)] * 1e3,
            "max": delays[-1] * 1e3,
        }
        return Measure(time.perf_counter() - started, extra=extra)

    return body


def _variant(
    kind: str, address: str, home: Path, body: Callable[[Execute], Awaitable[Measure]]
) -> Callable[[], Measure]:
    return lambda: anyio.run(_with_executor, kind, address, home, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N 50, M 5, 1 round")
    parser.add_argument("--runs", type=int, help="N (default 200)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    args = parser.parse_args()
    runs = args.runs or (50 if args.quick else 200)
    lone = 5 if args.quick else 20
    rounds = args.rounds or (1 if args.quick else 3)

    import dask
    from distributed import LocalCluster

    from orchestrator.executors.dask_local import LOOPBACK, cluster_config

    make: Any = LocalCluster
    with (
        tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp,
        dask.config.set(cluster_config()),
        make(
            n_workers=2,
            threads_per_worker=4,
            processes=True,
            host=LOOPBACK,
            dashboard_address=None,
        ) as cluster,
    ):
        home, address = Path(tmp), cluster.scheduler_address
        variants: dict[str, Callable[[], Measure]] = {}
        for kind in ("local", "dask"):
            variants[f"overhead {kind}"] = _variant(kind, address, home, _overhead(runs, home))
            variants[f"lone {kind}"] = _variant(kind, address, home, _lone(lone, home))
            variants[f"latency {kind}"] = _variant(kind, address, home, _latency(home))
        results = interleave(variants, rounds)

    def per_run(name: str, count: int) -> float:
        return median([m.wall for m in results[name]]) / count * 1e3

    def latency(kind: str, figure: str) -> float:
        return median([m.extra[figure] for m in results[f"latency {kind}"]])

    table = Table(
        f"Dask executor vs local ({runs} runs 8 in flight, {lone} alone, {rounds} round(s); "
        f"LocalCluster 2 workers x 4 threads; medians)",
        ["", "local", "dask", "dask / local"],
    )
    rows = [
        (f"overhead, {IN_FLIGHT} in flight (ms/run)", per_run, ("overhead {}", runs)),
        ("one run alone, start to end (ms)", per_run, ("lone {}", lone)),
    ]
    for title, figure, (pattern, count) in rows:
        local, remote = (
            figure(pattern.format("local"), count),
            figure(pattern.format("dask"), count),
        )
        table.add(title, f"{local:.1f}", f"{remote:.1f}", f"{remote / local:.1f}x")
    for figure in ("median", "p95", "max"):
        local, remote = latency("local", figure), latency("dask", figure)
        table.add(
            f"line latency, {figure} (ms)",
            f"{local:.2f}",
            f"{remote:.2f}",
            f"{remote / local:.1f}x",
        )
    table.print()


if __name__ == "__main__":
    main()
