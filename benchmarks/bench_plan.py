"""Planning cost, side by side: our lazy expansion vs Polyaxon's own library.

Measures, in one invocation:
- ``--help`` start-up against ``python -c pass`` (target: within 5x);
- planning the first 100 runs of a 10^6-point grid (wall time, peak RSS) with our CLI;
- Polyaxon's hypertune GridSearchManager on the same grid, when a Python with polyaxon
  installed is named by ``POLYAXON_PYTHON`` (it builds the whole suggestion list first).

Run: ``.venv/bin/python benchmarks/bench_plan.py``
"""

from __future__ import annotations

import os
import resource
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


def timed(cmd: list[str], repeat: int = 5) -> tuple[float, float]:
    """Median wall seconds and peak child RSS (MiB) of running ``cmd``."""
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(walls), peak


def main() -> None:
    py = sys.executable
    rows: list[tuple[str, float, float]] = []
    base, _ = timed([py, "-c", "pass"])
    rows.append(("python -c pass", base, 0.0))
    help_s, _ = timed([py, "-m", "orchestrator", "--help"])
    rows.append(("orchestrator --help", help_s, 0.0))
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "grid.yaml"
        spec.write_text(GRID)
        plan_s, plan_rss = timed(
            [py, "-m", "orchestrator", "plan", str(spec), "--limit", "100", "--json"], repeat=3
        )
        rows.append(("orchestrator plan, first 100 of 10^6", plan_s, plan_rss))
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
