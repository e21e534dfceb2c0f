"""Log capture throughput: one run writing flat out through ``python -m orchestrator run``
against the same writer redirected to a file (``> file``), in interleaved rounds.

Each round runs: the writer ``> file``; the orchestrator running the writer (its output
captured: log file, lines split, metric lines looked for); and the orchestrator running a
writer that writes nothing (its fixed cost: interpreter start, journal, summary); in an
order that alternates between rounds, each after a ``sync`` and with the previous row's
output removed (dirty pages left by one row must not slow the next).
Throughput of the orchestrator row is given both raw (whole command) and net of that fixed
cost, since the issue's target (>= 90% of ``> file``) is about capture, not start-up. The
``| cat`` row (the writer piped through ``cat`` into the file) is the floor of any capture
that sees the bytes: a pipe hop and a second process, where ``> file`` has neither.

Each row is timed until its bytes are on disk (a ``sync`` inside the timed part): timed only
until the writer exits, a row measures how much of its output the page cache happened to
absorb, which depends on the dirty pages the rows before it left (the same 1 GB ``> file``
took 0.26, 1.76 and 2.19 s in three rounds of one invocation on a 2-core VM). ``--cached``
times only until the command exits, as before.

    .venv/bin/python benchmarks/bench_logs.py            # ~1 GB per run, 3 rounds
    .venv/bin/python benchmarks/bench_logs.py --quick    # 100 MB, 3 rounds

Writers: ``python`` (a Python loop printing 100-byte lines, like a chatty training script),
``blocks`` (one Python process writing those lines 1 MB at a time: one child flat out) and
``yes`` (coreutils ``yes | head -c``: two processes, as fast as a pipe can be filled). Timings on a
busy machine are noisy: read the medians, and compare rows from the same invocation only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = 100  # bytes per line, newline included

WRITERS = {
    "python": "{python} -c {script}",
    "blocks": "{python} -c {blocks}",
    "yes": "yes {text} | head -c {size}",
}
_PYTHON_WRITER = "import sys; w = sys.stdout.buffer.write; line = b'x' * {width} + b'\\n'\n"
#: Whole lines, 1 MB at a time: one process writing as fast as its output takes it.
_BLOCK_WRITER = (
    "import sys; w = sys.stdout.buffer.write; block = (b'x' * {width} + b'\\n') * 10000\n"
)


def writer_command(kind: str, size: int) -> str:
    """The shell line of a writer of ``size`` bytes (``size`` 0: writes nothing)."""
    if size == 0:
        return "true"
    return WRITERS[kind].format(
        python=shlex.quote(sys.executable),
        script=shlex.quote(
            _PYTHON_WRITER.format(width=LINE - 1) + f"for _ in range({size // LINE}): w(line)"
        ),
        blocks=shlex.quote(
            _BLOCK_WRITER.format(width=LINE - 1)
            + f"for _ in range({size // LINE // 10000}): w(block)"
        ),
        width=LINE - 1,
        lines=size // LINE,
        text="x" * (LINE - 1),
        size=size,
    )


def spec_text(command: str) -> str:
    return textwrap.dedent(f"""
        version: 1.1
        kind: operation
        component:
          run:
            kind: job
            container: {{command: [/bin/sh, -c, {json.dumps(command)}]}}
    """)


def timed(argv: list[str], cwd: Path, env: dict[str, str], durable: bool = True) -> float:
    """Seconds ``argv`` takes, until its bytes are on disk (``durable``) or until it exits."""
    os.sync()  # no dirty pages of an earlier row to write back while this one runs
    start = time.perf_counter()
    subprocess.run(
        argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if durable:
        os.sync()
    return time.perf_counter() - start


def one_round(
    kind: str, size: int, base: Path, n: int, tree: str | None = None, durable: bool = True
) -> dict[str, float]:
    """One round: each row once, in an order that alternates between rounds; each row's
    output is checked, then removed before the next row runs. ``tree``: another checkout's
    orchestrator runs the same two rows too (``tree``, ``tree fixed``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    work = base / f"round{n}"
    work.mkdir()
    command = writer_command(kind, size)
    spec = work / "writer.yaml"
    spec.write_text(spec_text(command))
    empty = work / "empty.yaml"
    empty.write_text(spec_text(writer_command(kind, 0)))
    orch = [sys.executable, "-m", "orchestrator", "run", "--nocache", "--json"]
    rows = {
        "file": (["/bin/sh", "-c", f"{command} > {work / 'out.log'}"], work / "out.log"),
        "cat": (["/bin/sh", "-c", f"({command}) | cat > {work / 'cat.log'}"], work / "cat.log"),
        "orchestrator": ([*orch, "--home", str(work / "h1"), str(spec)], work / "h1"),
        "fixed": ([*orch, "--home", str(work / "h2"), str(empty)], work / "h2"),
    }
    envs = {name: env for name in rows}
    if tree is not None:
        rows["tree"] = ([*orch, "--home", str(work / "h3"), str(spec)], work / "h3")
        rows["tree fixed"] = ([*orch, "--home", str(work / "h4"), str(empty)], work / "h4")
        envs["tree"] = envs["tree fixed"] = {**env, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}
    order = list(rows) if n % 2 == 0 else list(reversed(rows))
    times = {}
    for name in order:
        argv, made = rows[name]
        times[name] = timed(argv, work, envs[name], durable)
        if not name.endswith("fixed"):
            logs = [made] if made.is_file() else list((made / "runs").glob("*/stdout.log"))
            if not logs or logs[0].stat().st_size != size:
                raise SystemExit(f"round {n}, {name}: {size} bytes expected in {made}")
        subprocess.run(["rm", "-rf", str(made)], check=True)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return {name: times[name] for name in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 MB per run instead of 1 GB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writer", choices=sorted(WRITERS), action="append")
    parser.add_argument("--dir", type=Path, default=None, help="where homes and files go")
    parser.add_argument(
        "--tree", help="another checkout (PYTHONPATH) whose orchestrator runs the same rows"
    )
    parser.add_argument(
        "--cached", action="store_true", help="time each row until it exits, not until synced"
    )
    args = parser.parse_args()
    size = (100 if args.quick else 1000) * 1000 * 1000 // LINE * LINE
    writers = args.writer or ["python", "blocks", "yes"]
    until = "it exits" if args.cached else "its bytes are on disk (sync)"
    print(f"{size / 1e6:.0f} MB per run ({size // LINE:,} lines), {args.rounds} rounds")
    print(f"each row timed until {until}")
    print(
        f"{'writer':8} {'> file':>10} {'| cat':>10} {'orch raw':>10} {'orch net':>10}"
        f" {'raw/file':>8} {'net/file':>8} {'net/cat':>8} {'fixed s':>8}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for kind in writers:
            rounds = [
                one_round(kind, size, Path(tmp), n, args.tree, not args.cached)
                for n in range(args.rounds)
            ]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            for label, orch, fixed in _rows(kind, args.tree):
                _print_row(label, size, med["file"], med["cat"], med[orch], med[fixed])
            for r in rounds:
                print(
                    "         rounds (s): " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()),
                    file=sys.stderr,
                )


def _rows(kind: str, tree: str | None) -> list[tuple[str, str, str]]:
    """The printed rows: this checkout's, then the other's (``--tree``)."""
    rows = [(kind, "orchestrator", "fixed")]
    if tree is not None:
        rows.append((f"{kind} (--tree)", "tree", "tree fixed"))
    return rows


def _print_row(label: str, size: int, file: float, cat: float, orch: float, fixed: float) -> None:
    """One writer's rates and ratios (medians in seconds in, MB/s out)."""
    capture = orch - fixed
    rate = {
        "file": size / file / 1e6,
        "cat": size / cat / 1e6,
        "raw": size / orch / 1e6,
        # Net of the fixed cost only when capture is most of the run: a small output
        # (--quick) against a noisy start-up would give absurd rates.
        "net": size / capture / 1e6 if capture > orch / 2 else math.nan,
    }

    def cell(value: float, unit: str) -> str:
        if math.isnan(value):
            return f"{'n/a':>{5 + len(unit)}}"
        return f"{value:>5.0f}{unit}" if unit else f"{value:>5.0%}"

    ratios = (rate["raw"] / rate["file"], rate["net"] / rate["file"], rate["net"] / rate["cat"])
    print(
        f"{label:8} "
        + " ".join(cell(rate[k], " MB/s") for k in ("file", "cat", "raw", "net"))
        + "".join(f" {cell(r, ''):>8}" for r in ratios)
        + f" {fixed:>8.2f}"
    )


if __name__ == "__main__":
    main()
