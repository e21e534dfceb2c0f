"""Planning cost, side by side: our lazy expansion vs Polyaxon's own library.

Measures, in one invocation:
- ``--help`` start-up against ``python -c pass`` (target: within 5x);
- planning the first 100 runs of a 10^6-point grid (wall time, peak RSS) with our CLI;
- planning the first run of one 10^6-value range (peak RSS: the range is never a list);
- Polyaxon's hypertune GridSearchManager on the same grid, when a Python with polyaxon
  installed is named by ``POLYAXON_PYTHON`` (it builds the whole suggestion list first);
- ``plan --json`` of the whole 10^6-run grid (streamed: target under 60 s, peak RSS flat);
- a 263k-entry mapping (a 4 MB file): ``plan --limit 1`` (load, check every entry) and
  ``plan --json`` of all of it (target under 5 s).

``--quick``: a 4*10^4 grid and a 26k mapping, fewer rounds. Peak RSS is each child's own
(``wait4``), the maximum over its rounds.

Run: ``.venv/bin/python benchmarks/bench_plan.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

GRID = textwrap.dedent("""
    version: 1.1
    kind: operation
    matrix:
      kind: grid
      params:
        a: {kind: range, value: "0:100:1"}
        b: {kind: range, value: "0:100:1"}
        c: {kind: range, value: "0:100:1"}
    component:
      inputs:
      - {name: a, type: float}
      - {name: b, type: float}
      - {name: c, type: float}
      run: {kind: job, container: {command: [train, "--a={{ a }}", "--b={{ b }}", "--c={{ c }}"]}}
""")

POLYAXON_SNIPPET = textwrap.dedent("""
    import itertools, sys
    from hypertune.search_managers.grid_search.manager import GridSearchManager
    from polyaxon.schemas import V1GridSearch
    config = V1GridSearch.from_dict({"kind": "grid", "params": {
        k: {"kind": "range", "value": "0:100:1"} for k in "abc"}})
    suggestions = GridSearchManager(config).get_suggestions()
    print(len(suggestions), suggestions[:100][-1])
""")


#: One dimension of 10^6 values: its values are computed from their index, never listed.
LONG_RANGE = textwrap.dedent("""
    version: 1.1
    kind: operation
    matrix:
      kind: grid
      params:
        a: {kind: range, value: "0:1000000:1"}
    component:
      inputs:
      - {name: a, type: float}
      run: {kind: job, container: {command: [train, "--a={{ a }}"]}}
""")


def mapping(entries: int) -> str:
    """A mapping of ``entries`` one-key entries, about 15 bytes each (263k: a 4 MB file)."""
    lines = ["version: 1.1", "kind: operation", "matrix:", "  kind: mapping", "  values:"]
    lines += [f"  - {{i: {i}}}" for i in range(entries)]
    lines += [
        "component:",
        "  inputs:",
        "  - {name: i, type: int}",
        '  run: {kind: job, container: {command: [fetch, "--i={{ i }}"]}}',
    ]
    return "\n".join(lines) + "\n"


def once(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, this child's own, from ``wait4``) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    proc.returncode = 0
    return wall, usage.ru_maxrss / 1024


def timed(cmd: list[str], repeat: int = 5) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MiB) of running ``cmd`` ``repeat`` times."""
    samples = [once(cmd) for _ in range(repeat)]
    return statistics.median(w for w, _ in samples), max(r for _, r in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4*10^4 grid, a 26k mapping")
    args = parser.parse_args()
    py = sys.executable
    big_rounds = 1 if args.quick else 3
    rows: list[tuple[str, float, float]] = []
    base, _ = timed([py, "-c", "pass"])
    rows.append(("python -c pass", base, 0.0))
    help_s, _ = timed([py, "-m", "orchestrator", "--help"])
    rows.append(("orchestrator --help", help_s, 0.0))
    with tempfile.TemporaryDirectory() as tmp:
        home = ["--home", str(Path(tmp) / "home")]
        spec = Path(tmp) / "grid.yaml"
        spec.write_text(GRID)
        plan = [py, "-m", "orchestrator", "plan", *home]
        plan_s, plan_rss = timed([*plan, str(spec), "--limit", "100", "--json"], repeat=3)
        rows.append(("orchestrator plan, first 100 of 10^6", plan_s, plan_rss))
        long_range = Path(tmp) / "range.yaml"
        long_range.write_text(LONG_RANGE)
        range_s, range_rss = timed([*plan, str(long_range), "--limit", "1"], repeat=3)
        rows.append(("plan --limit 1, one 10^6-value range", range_s, range_rss))
        grid, size = spec, "10^6"
        if args.quick:  # c takes 4 values, not 100
            grid, size = Path(tmp) / "grid-quick.yaml", "4*10^4"
            c_range = 'c: {kind: range, value: "0:%d:1"}'
            grid.write_text(GRID.replace(c_range % 100, c_range % 4))
        entries = 26_300 if args.quick else 263_000
        mapped = Path(tmp) / "mapping.yaml"
        mapped.write_text(mapping(entries))
        big = {
            f"plan --json, {size} grid (all)": [*plan, str(grid), "--json"],
            f"plan --limit 1, {entries:,}-entry mapping": [*plan, str(mapped), "--limit", "1"],
            f"plan --json, {entries:,}-entry mapping": [*plan, str(mapped), "--json"],
        }
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(big_rounds):  # interleaved rounds
            for name, cmd in big.items():
                samples.setdefault(name, []).append(once(cmd))
        for name, values in samples.items():
            wall = statistics.median(w for w, _ in values)
            rows.append((name, wall, max(r for _, r in values)))
    polyaxon = os.environ.get("POLYAXON_PYTHON")
    if polyaxon:
        px_s, px_rss = timed([polyaxon, "-c", POLYAXON_SNIPPET], repeat=1)
        rows.append(("polyaxon hypertune grid, 10^6 (all)", px_s, px_rss))
    else:
        rows.append(("polyaxon hypertune grid (set POLYAXON_PYTHON)", float("nan"), 0.0))
    print(f"{'what':<48} {'wall s':>8} {'peak RSS MiB':>13}")
    for name, wall, rss in rows:
        print(f"{name:<48} {wall:>8.3f} {rss:>13.0f}")
    print(f"\n--help / python -c pass = {help_s / base:.1f}x (target <= 5x)")


if __name__ == "__main__":
    main()
