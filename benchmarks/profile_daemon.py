"""Where a daemon submission's time goes: the daemon under load, measured from inside.

Starts the daemon with timers around the steps of a submission (loading the spec, compiling
the plan, building the sweep, waiting for the journal commit, the whole handler; after the
answer, the sweep's provenance and the looks at its code that sweeps share; on the journal's
writer thread, each transaction and how many records it committed together), drives
``--requests`` submissions from ``--clients`` client processes (those of ``bench_daemon.py``)
and prints: the median and mean wall time of each step, each thread's CPU per submission
(``/proc``), and, when ``py-spy`` is installed (``--py-spy PATH`` or on ``PATH``), the
functions each thread was busy in (inclusive, ms per submission; GIL waits count as busy).
A Python-level sampler cannot do that last part honestly: it needs the GIL to sample, so it
never sees a thread that holds it.

Run: ``.venv/bin/python benchmarks/profile_daemon.py [--spec one|open] [--clients 1]
[--requests 500] [--top 25]``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bench_daemon as bd
from benchmarks_common import scratch

#: Run as the daemon: time the steps of a submission; SIGUSR1 starts recording (after the
#: warm-up), SIGUSR2 stops it; written out at exit. Thread names are written too.
BOOT = textwrap.dedent("""
    import atexit, collections, functools, json, os, signal, statistics, sys, threading, time
    from orchestrator.daemon import manager, routes, specs
    from orchestrator.store import journal
    steps, recording = collections.defaultdict(list), [False]
    def timed(owner, name, label):
        fn = getattr(owner, name)
        if hasattr(fn, "__code__") and fn.__code__.co_flags & 0x80:  # a coroutine function
            @functools.wraps(fn)
            async def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    if recording[0]:
                        steps[label].append(time.perf_counter() - started)
        else:
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    if recording[0]:
                        steps[label].append(time.perf_counter() - started)
        setattr(owner, name, wrapper)
    timed(routes.Api, "submit", "the handler (Api.submit)")
    timed(manager.SweepManager, "submit", "  SweepManager.submit")
    timed(specs.SpecMemo, "prepare", "    load and compile (SpecMemo.prepare)")
    timed(specs, "load_text", "      load_text (worker thread)")
    timed(specs, "compile_plan", "      compile_plan (thread, or loop when known quick)")
    timed(manager.SweepManager, "_build", "    build the sweep (loop)")
    timed(manager.SweepManager, "_accept", "    accept (_accept)")
    timed(journal.Journal, "commit", "      commit wait (Journal.commit)")
    from orchestrator.store import writer
    timed(writer.JournalWriter, "_transaction", "      a transaction (journal-writer thread)")
    _attempt = writer.JournalWriter._attempt
    def attempt(self, records, probe=False):
        if recording[0] and records:
            steps["      records per transaction (count, not ms)"].append(len(records) / 1000)
        return _attempt(self, records, probe)
    writer.JournalWriter._attempt = attempt
    from orchestrator import provenance
    from orchestrator.engine import sweep as engine_sweep
    timed(engine_sweep, "collect", "after the answer: provenance (worker thread)")
    timed(provenance._LOOKS, "_look", "  one look at the code (git), shared")
    def start(*_):
        steps.clear(); recording[0] = True
    def stop(*_):
        recording[0] = False
    def dump():
        names = {str(t.native_id): t.name.split(" (")[0] for t in threading.enumerate()}
        out = {k: [len(v), statistics.median(v), statistics.mean(v)] for k, v in steps.items()}
        with open(os.environ["PROFILE_OUT"], "w") as f:
            json.dump({"steps": out, "names": names}, f)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    atexit.register(dump)
    from orchestrator.cli import main
    sys.argv = ["orchestrator", *sys.argv[1:]]
    sys.exit(main())
""")


def thread_cpu(pid: int) -> dict[str, float]:
    """Seconds of CPU per thread of ``pid``, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def py_spy_report(raw: Path, interval_ms: float, submissions: int, top: int) -> None:
    """Inclusive busy time per function and thread from ``py-spy record -f raw --threads``."""
    rate = 1000 / interval_ms  # samples per second
    per_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    busy: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        thread = re.sub(r"^thread \(0x[0-9A-Fa-f]+\): |^thread \(\d+\): ", "", frames[0])
        n = int(count)
        busy[thread] += n
        for frame in set(frames[1:]):
            per_thread[thread][frame] += n
    ms = 1000 / rate / submissions
    for thread, n in busy.most_common():
        print(f"\n{thread}: {n * ms:.3f} ms busy per submission; inclusive, by function:")
        for frame, hits in per_thread[thread].most_common(top):
            print(f"  {hits * ms:8.3f}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", choices=["one", "open"], default="one")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable")
    args = parser.parse_args()
    spec, extra = (bd.OPEN, {"open": True}) if args.spec == "open" else (bd.ONE_RUN, {})
    body = json.dumps({"spec": spec, **extra})
    sample_rate = 1000
    with scratch(Path("/tmp"), prefix="p-") as folder:
        out = folder / "steps.json"
        raw = folder / "spy.txt"
        os.environ["PROFILE_OUT"] = str(out)
        bd.ORCHESTRATOR = [sys.executable, "-c", BOOT]
        server, path = bd.start_daemon(folder)
        spy = None
        try:
            bd.post_rate(path, body, args.clients, 20)  # warm up: imports, first sweeps
            if not extra:
                bd.wait_idle(path)
            if args.py_spy:
                spy = subprocess.Popen(
                    [args.py_spy, "record", "-p", str(server.pid), "-o", str(raw), "-f",
                     "raw", "--threads", "--nonblocking", "-r", str(sample_rate)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1)  # attached
            before = thread_cpu(server.pid)
            os.kill(server.pid, signal.SIGUSR1)
            rate = bd.post_rate(path, body, args.clients, args.requests)
            os.kill(server.pid, signal.SIGUSR2)
            after = thread_cpu(server.pid)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        finally:
            server.stop()
        total = args.requests // args.clients * args.clients
        measured = json.loads(out.read_text())
        print(f"{rate:.0f} submissions/s ({args.spec}, {args.clients} client(s), {total} in all)")
        print(f"\n{'step (wall)':<40} {'count':>6} {'median ms':>10} {'mean ms':>9}")
        for step, (count, med, mean) in measured["steps"].items():
            print(f"{step:<40} {count:>6} {med * 1000:>10.3f} {mean * 1000:>9.3f}")
        print("\nCPU per submission, by thread (/proc):")
        for tid, seconds in sorted(after.items(), key=lambda kv: before.get(kv[0], 0) - kv[1]):
            used = seconds - before.get(tid, 0.0)
            if used > 0:
                name = measured["names"].get(tid, "(ended)")
                print(f"  {tid:>8} {name:<24} {used / total * 1000:8.3f} ms")
        if spy is not None and raw.exists():
            py_spy_report(raw, 1 / sample_rate * 1000, total, args.top)
        elif not args.py_spy:
            print("\n(py-spy not found: pass --py-spy PATH for where each thread is busy)")


if __name__ == "__main__":
    main()
