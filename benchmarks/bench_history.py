"""History at scale: ``ls --json`` and ``show last --json`` on homes with big sweeps.

Builds one home per size (1k, 10k, 50k runs; ``--quick``: 1k, 5k) through a fast path: the
journal's own schema (``Journal`` creates it, as every command does), its ``add_sweep`` for
the sweep, then the runs, their transitions and one metric each inserted in bulk, as the
journal writer would have left them (every configuration succeeded, one in ten retried once,
so ``show`` must pick the newest attempt). Then times both commands as subprocesses, rounds
interleaved across sizes, and prints the median wall time and the peak RSS of each.

Run: ``.venv/bin/python benchmarks/bench_history.py [--quick] [--rounds N]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: What a command is allowed per the issue's target (seconds).
TARGET_S = 2.0


def build_home(home: Path, runs: int) -> None:
    """A home whose journal holds one finished sweep of ``runs`` configurations."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from orchestrator.store.journal import Journal
    from orchestrator.store.layout import journal_path

    sweep_id = hashlib.sha256(f"sweep-{runs}".encode()).hexdigest()[:32]
    journal = Journal(journal_path(home))
    journal.add_sweep(
        sweep_id,
        name=f"bench-{runs}",
        description=None,
        tags=[],
        spec_path="bench.yaml",
        kind="grid",
        total=runs,
        concurrency=8,
        pid=os.getpid(),
        seed=None,
    )
    journal.set_sweep_state(sweep_id, "succeeded", None, finished=True)
    journal.close()
    conn = sqlite3.connect(journal_path(home))
    now = time.time() - runs
    run_rows, transitions, metrics = [], [], []
    for i in range(runs):
        params = json.dumps({"i": i})
        p_hash = hashlib.sha256(params.encode()).hexdigest()
        attempts = 2 if i % 10 == 0 else 1
        for attempt in range(1, attempts + 1):
            at = now + i + attempt * 0.001
            run_id = hashlib.sha256(f"{sweep_id}-{i}-{attempt}".encode()).hexdigest()[:32]
            state = "succeeded" if attempt == attempts else "failed"
            run_rows.append(
                (run_id, sweep_id, i, p_hash, params, json.dumps(["/bin/true"]), state, None,
                 0 if state == "succeeded" else 1, attempt, at, at, at + 0.01, None, p_hash)
            )  # fmt: skip
            transitions += [
                (sweep_id, run_id, None, "created", None, at),
                (sweep_id, run_id, "created", "running", None, at),
                (sweep_id, run_id, "running", state, None, at + 0.01),
            ]
            metrics.append((run_id, "loss", 1, 1.0 / (i + 1), at))
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, sweep_id, idx, config_hash, params, argv, state, reason, "
            "exit_code, attempt, created_at, started_at, finished_at, run_dir, params_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            run_rows,
        )
        conn.executemany(
            "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            transitions,
        )
        conn.executemany(
            "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, ?, ?, ?, ?)", metrics
        )
    conn.close()


def timed(cmd: list[str], tree: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system: steadier than wall on a busy machine) and
    peak RSS (MiB) of one run of ``cmd`` (from wait4's rusage); ``tree``: with the
    ``orchestrator`` package of that source tree instead."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
    started = time.perf_counter()
    proc = subprocess.Popen(  # in the tree: ``-m`` puts the working folder first on the path
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tree
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{cmd} failed: {proc.stderr.read().decode()}")
    if proc.stderr is not None:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 5k runs, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--baseline",
        metavar="TREE",
        help="also time the orchestrator of this source tree (e.g. `git archive HEAD` "
        "unpacked), interleaved; the homes carry this tree's indexes",
    )
    parser.add_argument("--build", nargs=2, metavar=("HOME", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_home(Path(args.build[0]), int(args.build[1]))
        return
    sizes = [1_000, 5_000] if args.quick else [1_000, 10_000, 50_000]
    rounds = args.rounds or (3 if args.quick else 5)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        homes = {}
        for n in sizes:
            homes[n] = Path(tmp) / f"home-{n}"
            started = time.perf_counter()
            # In a child: a forked child's peak RSS counts its parent's pages before exec,
            # so this process stays small.
            subprocess.run([py, __file__, "--build", str(homes[n]), str(n)], check=True)
            print(f"built a home with {n:,} runs in {time.perf_counter() - started:.1f} s")
        commands = {
            "ls --json": ["ls", "--json"],
            "show last --json": ["show", "last", "--json"],
        }
        trees: dict[str, str | None] = {"": None}
        if args.baseline:
            trees["baseline "] = str(Path(args.baseline).resolve())
        samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for _ in range(rounds):  # interleaved: every command, size and tree once per round
            for n in sizes:
                for name, words in commands.items():
                    for label, tree in trees.items():
                        cmd = [py, "-m", "orchestrator", *words, "--home", str(homes[n])]
                        samples.setdefault((label + name, n), []).append(timed(cmd, tree))
    print(f"\n{'command':<29} {'runs':>8} {'median s':>9} {'min s':>7} {'CPU s':>7} {'RSS MiB':>8}")
    for (name, n), values in samples.items():
        walls = [w for w, _, _ in values]
        cpu = statistics.median(c for _, c, _ in values)
        rss = max(r for _, _, r in values)
        flag = "" if statistics.median(walls) < TARGET_S else f"  (target < {TARGET_S} s)"
        print(
            f"{name:<29} {n:>8,} {statistics.median(walls):>9.3f} {min(walls):>7.3f} "
            f"{cpu:>7.3f} {rss:>8.0f}{flag}"
        )
    print(f"\n{rounds} interleaved rounds; a loaded machine makes these noisy.")


if __name__ == "__main__":
    main()
