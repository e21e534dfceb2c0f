"""The daemon: submissions per second, and the delay from a run writing a log line to a
follower of ``/api/v1/runs/{id}/logs?follow=1`` receiving it.

No peer can be run here for this (Polyaxon's API needs Kubernetes; Ray's job server is
measured in PEERS.md at ~2 s per job); the reference rows are the numbers DAEMON.md measured
for a bare Starlette/uvicorn prototype on this stack, so the table shows what the engine adds.

Run: ``.venv/bin/python benchmarks/bench_daemon.py [SUBMISSIONS]``
"""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from orchestrator.diagnostics import is_ready_record

LINES = 200
TICKER = (
    "import sys, time\n"
    f"for i in range({LINES}):\n"
    "    print(f'{i} {time.time()}', flush=True)\n"
    "    time.sleep(0.01)\n"
)


def start(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon", "--home", str(home), "--max-runs", "4"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if is_ready_record(line):
            return proc
    raise SystemExit("the daemon did not start")


def client(home: Path) -> httpx.Client:
    info = json.loads((home / "daemon" / "daemon.json").read_text())
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=info["socket"]),
        base_url="http://daemon",
        timeout=httpx.Timeout(10, read=None),
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    proc = start(home)
    try:
        spec = (
            "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [/bin/true]}}\n"
        )
        with client(home) as c:
            started = time.perf_counter()
            for _ in range(count):
                c.post("/api/v1/sweeps", json={"spec": spec}).raise_for_status()
            sequential = count / (time.perf_counter() - started)

            while c.get("/api/v1/ready").json()["sweeps"]:  # let the first batch finish
                time.sleep(0.05)

        def submit(n: int) -> None:
            with client(home) as c:
                for _ in range(n):
                    c.post("/api/v1/sweeps", json={"spec": spec}).raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, [count // 8] * 8))
        parallel = (count // 8 * 8) / (time.perf_counter() - started)

        ticker = (
            "version: 1.1\nkind: component\nrun: {kind: job, container: {command: "
            f"{json.dumps([sys.executable, '-c', TICKER])}}}}}\n"
        )
        delays: list[float] = []
        with client(home) as c:
            sweep = c.post("/api/v1/sweeps", json={"spec": ticker}).json()["sweep"]
            run_id = None
            while run_id is None:  # the run appears in the journal as soon as it is created
                runs = c.get(f"/api/v1/sweeps/{sweep}").json()["runs"]
                run_id = runs[0]["id"] if runs else None
            with c.stream("GET", f"/api/v1/runs/{run_id}/logs", params={"follow": "1"}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and " " in line[6:]:
                        sent = float(line[6:].split()[1])
                        delays.append((time.time() - sent) * 1000)
                    elif line == "event: end":
                        break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    delays = delays[20:]  # the first lines were already written when the follower attached
    ordered = sorted(delays)
    print(f"{'':<46} {'value':>12}")
    print(f"{'submissions/s, one client (Unix socket)':<46} {sequential:>12.0f}")
    print(f"{'submissions/s, 8 clients':<46} {parallel:>12.0f}")
    print(f"{'log line -> SSE follower, median ms':<46} {statistics.median(delays):>12.2f}")
    print(f"{'log line -> SSE follower, p95 ms':<46} {ordered[int(0.95 * len(ordered))]:>12.2f}")
    print(f"{'reference (DAEMON.md prototype):':<46}")
    print(f"{'  small POST/s, one sequential client':<46} {'852':>12}")
    print(f"{'  SSE event delay, 1 follower, p50 ms':<46} {'0.26-0.61':>12}")


if __name__ == "__main__":
    main()
