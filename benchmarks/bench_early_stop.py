"""Early-stopping reaction time: a child writes the target metric line; how long until its
siblings receive SIGTERM? 8 runs at once; target under 100 ms.

Side by side with the floor: a minimal asyncio program that spawns the same 8 children,
reads the first one's stdout and signals the others the moment the line arrives (no journal,
no events, no plugins). No peer runs this locally: Polyaxon's early stopping needs its paid
server, and Ray Tune and W&B need their own runtimes.

Run: ``.venv/bin/python benchmarks/bench_early_stop.py [REPEAT]`` (default 5 sweeps), or
``--quick`` (one sweep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, signal, sys, time
    role, out = sys.argv[1], sys.argv[2]
    def stopped(*_):
        with open(out, "a") as f:
            f.write(f"term {time.time()}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stopped)
    time.sleep(0.5)
    if role == "winner":
        with open(out, "a") as f:
            f.write(f"sent {time.time()}\\n")
        print(json.dumps({"metrics": {"accuracy": 0.99}, "step": 1}), flush=True)
    while True:
        time.sleep(0.01)
""")


def spec(child: Path, out: Path) -> str:
    # Distinct values: identical siblings would be cache twins waiting on each other.
    values = [{"role": "winner" if i == 0 else "sibling", "i": i} for i in range(8)]
    return textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          concurrency: 8
          values: {json.dumps(values)}
          earlyStopping: [{{kind: metric_early_stopping, metric: accuracy, value: 0.9,
                            optimization: maximize}}]
        component:
          inputs: [{{name: role, type: str}}]
          run: {{kind: job, container: {{command: ["{sys.executable}", "{child}", "{{{{ role }}}}",
                                                  "{out}"]}}}}
    """)


def reactions(out: Path) -> list[float]:
    lines = [line.split() for line in out.read_text().splitlines()]
    sent = next(float(t) for kind, t in lines if kind == "sent")
    return [(float(t) - sent) * 1000 for kind, t in lines if kind == "term"]


async def floor_once(child: Path, out: Path) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(child),
            "winner" if i == 0 else "sibling",
            str(out),
            stdout=subprocess.PIPE,
        )
        for i in range(8)
    ]
    assert procs[0].stdout is not None
    line = await procs[0].stdout.readline()
    if b'"metrics"' in line:
        for proc in procs[1:]:
            proc.terminate()
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repeat", type=int, nargs="?", help="sweeps (default 5)")
    parser.add_argument("--quick", action="store_true", help="one sweep")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)
    ours: list[float] = []
    floor: list[float] = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        child = Path(tmp) / "child.py"
        child.write_text(CHILD)
        for i in range(repeat):
            out = Path(tmp) / f"ours{i}.txt"
            path = Path(tmp) / f"spec{i}.yaml"
            path.write_text(spec(child, out))
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    str(path),
                    "--home",
                    str(Path(tmp) / f"home{i}"),
                    "--grace",
                    "5",
                    "--json",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            ours.extend(reactions(out))
            floor_out = Path(tmp) / f"floor{i}.txt"
            asyncio.run(floor_once(child, floor_out))
            floor.extend(reactions(floor_out))
    print(
        f"metric line -> siblings' SIGTERM, 8 concurrent runs, {repeat} sweeps "
        f"({len(ours)} siblings)"
    )
    print(f"{'':<38} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, values in (
        ("orchestrator (journal, bus, plugin)", ours),
        ("floor: bare asyncio, pipe -> signal", floor),
    ):
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{name:<38} {statistics.median(values):>10.1f} {p90:>8.1f} {max(values):>8.1f}")


if __name__ == "__main__":
    main()
