"""The end of a big sweep: what ``run`` prints once every run has finished.

A sweep past 1,000 runs keeps its finished runs in the journal, not in memory; at its end
``run --json`` prints every run's row and ``run`` prints the final table. This times both on
homes holding one finished sweep of N runs (built by ``bench_history.build_home``: runs,
transitions and a metric each, one configuration in ten retried), each in a child process,
with the child's peak RSS (``wait4``). Rounds interleave the two outputs and, with
``--baseline TREE``, the same code of another source tree (``git archive`` of the old code),
which prints ``summary_json``/``summary_table`` of the same runs.

Run: ``.venv/bin/python benchmarks/bench_sweep_end.py [--runs 1000000 50000] [--rounds 1]``
(homes are kept under ``--homes``, default a folder in /tmp, and reused when present).
``--fake N`` instead runs a whole sweep of N runs with the fake executor in the child, then
prints its end: the peak RSS of a sweep that size, engine and end together.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_history import build_home

#: The end of ``run`` in this tree (``write_*``) or in an older one (``summary_*``).
CHILD = """
import sys
from pathlib import Path
from orchestrator.engine.records import JournalRuns
from orchestrator.store.journal import Journal
from orchestrator.store.layout import journal_path
from orchestrator import reporting
what, home = sys.argv[1], Path(sys.argv[2])
journal = Journal(journal_path(home))
sweep = journal.latest_sweeps(1)[0].id
runs = JournalRuns(journal, sweep)
out = sys.stdout
if hasattr(reporting, "write_summary_json"):
    if what == "json":
        reporting.write_summary_json(out, sweep, "succeeded", runs)
    else:
        reporting.write_final_table(out, runs, total=len(runs), objective=None, show="show")
elif what == "json":
    out.write(reporting.summary_json(sweep, "succeeded", runs))
else:
    out.write(reporting.summary_table(runs, total=len(runs)))
out.write("\\n")
journal.close()
"""


#: A whole sweep of N runs with the fake executor (no processes: the engine, the journal and
#: the end), then what ``run`` prints: the peak RSS of a sweep of that size, end included.
FAKE = """
import sys, tempfile
from pathlib import Path
import anyio
from orchestrator import reporting
from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.spec import compile_plan, load_text
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from orchestrator.testing import FakeExecutor, FakeRun
what, runs = sys.argv[1], int(sys.argv[2])
spec = (
    "version: 1.1\\nkind: operation\\nmatrix: {kind: grid, concurrency: 8, params: "
    "{a: {kind: range, value: '0:%d:1'}}}\\ncomponent:\\n  inputs: [{name: a, type: float}]\\n"
    "  run: {kind: job, container: {command: [work, '{{ a }}']}}\\n" % runs
)
with tempfile.TemporaryDirectory() as tmp:
    home = Path(tmp)
    journal = Journal(home / "journal.sqlite")
    plan = compile_plan(load_text(spec, "fake.yaml"), paths=run_paths(home))
    settings = SweepSettings(home=home, spec_path="fake.yaml", concurrency=8)
    controller = build_sweep(plan, settings, journal=journal, plugins=PluginHost(),
                             executor=FakeExecutor(lambda job: FakeRun()))
    result = anyio.run(controller.run)
    out = sys.stdout
    if not hasattr(reporting, "write_summary_json"):  # an older tree
        if what == "json":
            out.write(reporting.summary_json(result.sweep_id, result.state.value, result.runs))
        else:
            out.write(reporting.summary_table(result.runs, total=len(plan)))
    elif what == "json":
        reporting.write_summary_json(out, result.sweep_id, result.state.value, result.runs)
    else:
        reporting.write_final_table(out, result.runs, total=len(plan), objective=None,
                                    show="show")
    out.write("\\n")
    journal.close()
"""


def once(what: str, home: Path | int, tree: str | None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and bytes printed by one child (``home``: a number of
    runs instead: a whole fake sweep of that many runs)."""
    env = {**os.environ, "PYTHONPATH": tree or str(Path(__file__).resolve().parents[1])}
    started = time.perf_counter()
    child = FAKE if isinstance(home, int) else CHILD
    proc = subprocess.Popen(
        [sys.executable, "-c", child, what, str(home)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=tree,
    )
    assert proc.stdout is not None
    size = 0
    while chunk := proc.stdout.read(1 << 20):
        size += len(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{what} on {home} failed ({tree or 'this tree'})")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1_000_000, 50_000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--homes", type=Path, default=Path("/tmp/bench_sweep_end"))
    parser.add_argument("--baseline", metavar="TREE", help="also time this source tree")
    parser.add_argument(
        "--baseline-max", type=int, default=50_000, help="largest sweep the baseline gets"
    )
    parser.add_argument(
        "--fake",
        type=int,
        metavar="N",
        help="instead: a whole sweep of N runs with the fake executor, then its end",
    )
    parser.add_argument(
        "--fake-outputs", nargs="+", default=["json", "table"], choices=["json", "table"]
    )
    args = parser.parse_args()
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if args.baseline:
        trees.append(("baseline", args.baseline))
    if args.fake:
        for name, tree in trees:
            for what in args.fake_outputs:
                wall, peak, size = once(what, args.fake, tree)
                print(f"{name}: fake sweep of {args.fake:,} runs, then its {what}: {wall:.1f} s, "
                      f"peak RSS {peak:.0f} MiB, {size:,} bytes printed")  # fmt: skip
        return
    homes = {}
    for runs in args.runs:
        home = args.homes / f"h{runs}"
        if not (home / "journal.sqlite").exists():
            started = time.perf_counter()
            build_home(home, runs)
            print(f"built {runs:,}-run home in {time.perf_counter() - started:.0f} s")
        homes[runs] = home
    samples: dict[tuple[str, int, str], list[tuple[float, float, int]]] = {}
    for _ in range(args.rounds):
        for runs, home in homes.items():
            for name, tree in trees:
                if tree is not None and runs > args.baseline_max:
                    continue
                for what in ("json", "table"):
                    samples.setdefault((name, runs, what), []).append(once(what, home, tree))
    print(f"{'tree':<10} {'runs':>10} {'output':<6} {'wall s':>8} {'peak MiB':>9} {'bytes':>13}")
    for (name, runs, what), values in samples.items():
        wall = statistics.median(v[0] for v in values)
        peak = max(v[1] for v in values)
        print(f"{name:<10} {runs:>10,} {what:<6} {wall:>8.1f} {peak:>9.0f} {values[0][2]:>13,}")


if __name__ == "__main__":
    main()
