"""The engine's own CPU per run, without processes: which plugin costs what (issue 14).

A sweep of N runs through the real engine (the controller, the journal and its writer thread,
the installed plugins) with :class:`~orchestrator.testing.FakeExecutor`, which starts no
process, so what is left is the orchestrator's Python and SQLite. Each row runs in a fresh
interpreter; rounds are interleaved and the figures are medians. CPU is split by thread: the
event loop's (the serial bottleneck), the journal writer's and the cache writer's.

Rows: ``bare anyio`` (a task per run under a CapacityLimiter, nothing else: the floor of an
anyio engine), ``engine, no plugins``, ``engine, early stopping``, ``engine, cache``,
``engine, both`` (what ``orchestrator run`` loads by default), and ``engine, cache, 9-item
argv`` (runs with a training script's kind of command line: what the cache's key costs when
it looks at each item that may name a file).

Run: ``.venv/bin/python benchmarks/bench_engine.py`` (4,000 runs x 3 rounds, about a minute)
or ``--runs 2000 --rounds 5``; ``--rows cache plugins``: only the rows whose name holds one
of those words.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks_common import Table, median, noop_spec

#: A row whose runs have a command line like a training script's (flags, a param, words):
#: the cache's key looks at each argv item that may name a file.
ARGV_ROW = "engine, cache, 9-item argv"


def argv_spec(n: int) -> str:
    """The grid of :func:`noop_spec` with ``/bin/true --lr {{ i }} --epochs 3 ...``."""
    return noop_spec(n).replace(
        "command: [/bin/true]",
        "command: [/bin/true, --lr, '{{ i }}', --epochs, '3', --optimizer, adam, --name, x]",
    )


PLUGINS = {
    "engine, no plugins": ["cache", "early_stopping"],
    "engine, early stopping": ["cache"],
    "engine, cache": ["early_stopping"],
    "engine, both": [],
    ARGV_ROW: ["early_stopping"],
}

#: One row, in a fresh interpreter: prints {"wall", "cpu", "threads": {name: cpu}} per run.
ROW = textwrap.dedent("""
    import json, sys, tempfile, threading, time
    from pathlib import Path
    import anyio

    clocks, ended = {}, {}
    original = threading.Thread.run
    def run(self):
        clocks[self.name] = time.pthread_getcpuclockid(threading.get_ident())
        try:
            original(self)
        finally:
            ended[self.name] = ended.get(self.name, 0.0) + time.thread_time()
            del clocks[self.name]
    threading.Thread.run = run

    n, spec, deny = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

    async def bare():
        limiter = anyio.CapacityLimiter(8)
        async def one():
            async with limiter:
                await anyio.lowlevel.checkpoint()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)

    from orchestrator.engine.build import SweepSettings, build_sweep
    from orchestrator.engine.plugin_host import PluginHost
    from orchestrator.spec.load import load_spec
    from orchestrator.spec.resolve import compile_plan
    from orchestrator.store.journal import Journal
    from orchestrator.store.layout import run_paths
    from orchestrator.testing import FakeExecutor, FakeRun

    async def engine(home):
        host = PluginHost.installed(sys.stderr, deny=deny)
        journal = Journal(home / "journal.sqlite")
        settings = SweepSettings(home=home, spec_path=spec, concurrency=8, grace=1.0)
        plan = compile_plan(load_spec(spec), paths=run_paths(home))
        controller = build_sweep(
            plan, settings, journal=journal, plugins=host,
            executor=FakeExecutor(lambda job: FakeRun()),
        )
        result = await controller.run()
        journal.close()
        assert result.state == "succeeded", result.state

    with tempfile.TemporaryDirectory() as tmp:
        start_cpu, start = time.process_time(), time.perf_counter()
        start_main = time.thread_time()
        anyio.run(bare) if deny is None else anyio.run(engine, Path(tmp))
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        threads = {"main": time.thread_time() - start_main}
        threads.update(ended)
        threads.update({k: time.clock_gettime(c) for k, c in clocks.items()})
    print(json.dumps({"wall": wall / n, "cpu": cpu / n,
                      "threads": {k: v / n for k, v in threads.items()}}))
""")


def measure(n: int, spec: Path, deny: list[str] | None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", ROW, str(n), str(spec), json.dumps(deny)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rows",
        metavar="WORD",
        nargs="+",
        help="only the rows whose name holds one of these words (say: --rows plugins cache)",
    )
    args = parser.parse_args()
    rows: dict[str, list[str] | None] = {"bare anyio (task + limiter)": None, **PLUGINS}
    if args.rows:
        rows = {name: deny for name, deny in rows.items() if any(w in name for w in args.rows)}
    results: dict[str, list[dict[str, object]]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "noop.yaml"
        spec.write_text(noop_spec(args.runs))
        argv = Path(tmp) / "argv.yaml"
        argv.write_text(argv_spec(args.runs))
        # The runs' working folder as a project's usually is: not edited in the last
        # seconds (the cache trusts what a folder lacks only then).
        os.utime(tmp, (time.time() - 60, time.time() - 60))
        for r in range(args.rounds):
            names = list(rows)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                print(f"  round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr)
                results[name].append(
                    measure(args.runs, argv if name == ARGV_ROW else spec, rows[name])
                )
    table = Table(
        f"{args.runs:,} runs through the engine with FakeExecutor (no processes), 8 at a time: "
        f"median of {args.rounds} interleaved round(s), ms per run",
        ["", "wall", "CPU", "event loop", "journal writer", "cache writer"],
    )

    def ms(measures: list[dict[str, object]], pick: str) -> str:
        values = []
        for m in measures:
            threads = m["threads"]
            assert isinstance(threads, dict)
            value = m.get(pick) if pick in ("wall", "cpu") else threads.get(pick)
            values.append(float(value) if isinstance(value, int | float) else 0.0)
        return f"{median(values) * 1000:.3f}"

    for name, measures in results.items():
        table.add(
            name,
            ms(measures, "wall"),
            ms(measures, "cpu"),
            ms(measures, "main"),
            ms(measures, "journal-writer"),
            ms(measures, "cache-writer"),
        )
    table.print()


if __name__ == "__main__":
    main()
