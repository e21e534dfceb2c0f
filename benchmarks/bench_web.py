"""The web page, in Debian's chromium against a real daemon: how long from a run's metric line
to its point on the chart, and how much memory the page holds after a 10,000-run sweep.

Latency rows (one run per round printing LINES metric lines, INTERVAL apart, each timestamped
by the child just before it prints it; rounds are separate sweeps):
- ``raw SSE event (httpx)``: the reference, the same lines' ``MetricReported`` events as an
  httpx client following ``GET /api/v1/events`` receives them (the floor under the page);
- ``point on the chart``: the page's ``#chart[data-points]`` reaching that line's count, seen
  by a MutationObserver in the page (``performance.timeOrigin + performance.now()``, the same
  wall clock as the child's ``time.time()``). That is the DOM update after uPlot's
  ``setData``; the paint follows in the same animation frame.

Memory rows (Chrome DevTools ``Performance.getMetrics`` after a forced garbage collection:
JS heap used, DOM nodes; and the median of 30 animation frames' intervals as a
responsiveness probe):
- ``1-run sweep page``: the reference, the page of the last latency round;
- ``10,000-run sweep page, open while it ran``: opened when the sweep was submitted, left
  live while every run (``/bin/echo`` of one metric line: each run a series of one point)
  came and went;
- ``the same page, loaded after``: the finished sweep's page opened afresh. Close to the row
  above means the live page did not accumulate what a fresh load does not hold.

Run: ``.venv/bin/python benchmarks/bench_web.py`` (3 rounds of 50 lines, 10,000 runs) or
``--quick`` (1 round of 20 lines, 1,000 runs); ``--runs N``, ``--rounds R``. Needs
``scripts/setup-test-deps`` and the dev extra (selenium). The machine is shared: absolute
figures are noisy, compare rows of one invocation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks_common import Table, median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the browser tests' helpers: daemon, chromium, waiting

from tests.browser.support import (  # noqa: E402
    Daemon,
    browser_missing,
    chromium,
    login,
    start_daemon,
    wait_for,
    wait_js,
)

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

INTERVAL = 0.1
#: Waits for its gate, then prints N metric lines INTERVAL apart, writing the wall-clock time
#: of each (just before the print) to TIMES.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    gate, times = Path(sys.argv[1]), Path(sys.argv[2])
    count, interval = int(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with times.open("w") as out:
        for step in range(count):
            now = time.time()
            out.write(f"{now}\\n")
            out.flush()
            print(json.dumps({"metrics": {"loss": 1 / (1 + step)}, "step": step}), flush=True)
            time.sleep(interval)
    """
)
#: Records (wall-clock ms, points) each time ``#chart[data-points]`` changes.
OBSERVE = """
window.__points = [];
let last = null;
const look = () => {
  const c = document.querySelector('#chart');
  const n = c === null ? null : Number(c.getAttribute('data-points'));
  if (n !== null && n !== last) {
    last = n;
    window.__points.push([performance.timeOrigin + performance.now(), n]);
  }
};
new MutationObserver(look).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ['data-points']});
look();
"""
FRAMES = """
const done = arguments[arguments.length - 1];
const times = [];
const step = t => {
  times.push(t);
  if (times.length < 31) requestAnimationFrame(step); else done(times);
};
requestAnimationFrame(step);
"""


def one_run_spec(folder: Path, count: int) -> str:
    script = folder / "child.py"
    script.write_text(CHILD)
    command = [sys.executable, str(script), str(folder / "go"), str(folder / "times")]
    command += [str(count), str(INTERVAL)]
    return (
        "version: 1.1\nkind: component\n"
        f"run: {{kind: job, container: {{command: {json.dumps(command)}}}}}\n"
    )


def many_runs_spec(runs: int) -> str:
    line = '{"metrics": {"loss": {{ i }}}}'
    return (
        "version: 1.1\nkind: operation\n"
        "matrix: {kind: grid, concurrency: 8, "
        f'params: {{i: {{kind: range, value: "0:{runs}:1"}}}}}}\n'
        f"component:\n  inputs: [{{name: i, type: int}}]\n"
        f"  run: {{kind: job, container: {{command: [/bin/echo, {json.dumps(line)}]}}}}\n"
    )


def follow_metrics(
    daemon: Daemon, count: int, arrived: list[float], ready: threading.Event
) -> None:
    """Arrival times (ms) of the next ``count`` MetricReported events on the event stream."""
    with daemon.api() as api, api.stream("GET", "/events") as answer:
        ready.set()
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "MetricReported":
                arrived.append(time.time() * 1000)
                if len(arrived) == count:
                    return


def latency_round(
    daemon: Daemon, browser: WebDriver, count: int
) -> tuple[list[float], list[float]]:
    """(SSE latencies, chart latencies) in ms of one run's ``count`` metric lines."""
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-", dir="/tmp"))
    try:
        sweep = daemon.submit(one_run_spec(folder, count))
        arrived: list[float] = []
        ready = threading.Event()
        follower = threading.Thread(target=follow_metrics, args=(daemon, count, arrived, ready))
        follower.start()
        browser.get(f"{daemon.url}/sweeps/{sweep}")
        wait_js(
            browser,
            "return document.querySelector('#status').textContent === 'live'"
            " && document.querySelector('#sweep') !== null",
            "the sweep page, live",
        )
        browser.execute_script(OBSERVE)
        ready.wait(30)
        (folder / "go").touch()
        follower.join(120)
        wait_js(
            browser,
            f"return Number(document.querySelector('#chart')"
            f".getAttribute('data-points')) >= {count}",
            "every point on the chart",
        )
        sent = [float(t) * 1000 for t in (folder / "times").read_text().split()]
        seen: list[list[float]] = browser.execute_script("return window.__points")
        chart = [next(t for t, n in seen if n >= i + 1) - s for i, s in enumerate(sent)]
        sse = [a - s for a, s in zip(arrived, sent, strict=True)]
        return sse, chart
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def page_memory(browser: WebDriver) -> dict[str, float]:
    """JS heap used (MB) and DOM nodes after a forced GC; median frame interval (ms)."""
    browser.execute_cdp_cmd("HeapProfiler.enable", {})
    browser.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    browser.execute_cdp_cmd("Performance.enable", {})
    metrics = {
        m["name"]: m["value"]
        for m in browser.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    }
    frames: list[float] = browser.execute_async_script(FRAMES)
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    return {
        "heap": metrics["JSHeapUsedSize"] / 1e6,
        "nodes": metrics["Nodes"],
        "frame": median(gaps),
    }


def wait_done(browser: WebDriver, runs: int, timeout: float) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, timeout, poll_frequency=0.5).until(
        lambda d: d.execute_script(
            "const t = document.querySelector('table#runs');"
            f"return t !== null && t.getAttribute('data-done') === '{runs}'"
        ),
        f"{runs} runs done on the page",
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[round(0.95 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 20 lines, 1,000 runs")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 3)")
    parser.add_argument("--lines", type=int, help="metric lines per round (default 50)")
    parser.add_argument("--runs", type=int, help="runs of the big sweep (default 10,000)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    lines = args.lines or (20 if args.quick else 50)
    runs = args.runs or (1000 if args.quick else 10_000)
    reason = browser_missing()
    if reason:
        sys.exit(f"bench_web: {reason}")
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    proc = start_daemon(home, max_runs=8)
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    try:
        daemon = Daemon(home, proc)
        with chromium() as browser:
            browser.set_script_timeout(60)
            login(browser, daemon)
            sse: list[float] = []
            chart: list[float] = []
            for r in range(rounds):
                print(f"  latency round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
                one_sse, one_chart = latency_round(daemon, browser, lines)
                sse += one_sse
                chart += one_chart
            small = page_memory(browser)
            print(f"  a sweep of {runs:,} runs ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            sweep = daemon.submit(many_runs_spec(runs))
            browser.get(f"{daemon.url}/sweeps/{sweep}")
            wait_done(browser, runs, timeout=1800)
            took = time.perf_counter() - started
            live = page_memory(browser)
            browser.get(f"{daemon.url}/sweeps/{sweep}")
            wait_done(browser, runs, timeout=300)
            wait_for(
                browser,
                lambda d: d.execute_script(
                    "const c = document.querySelector('#chart');"
                    "return c !== null && Number(c.getAttribute('data-points')) > 0"
                ),
                "the chart",
            )
            fresh = page_memory(browser)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        drain.join(5)
        proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)

    table = Table(
        f"metric line -> ..., {len(chart)} lines ({rounds} round(s) of {lines}, "
        f"{INTERVAL * 1000:.0f} ms apart)",
        ["", "p50 ms", "p95 ms", "max ms"],
    )
    for name, values in (("raw SSE event (httpx): reference", sse), ("point on the chart", chart)):
        table.add(name, f"{median(values):.1f}", f"{p95(values):.1f}", f"{max(values):.1f}")
    table.print()
    print()
    table = Table(
        "the sweep page's memory after a forced GC (Performance.getMetrics)",
        ["", "JS heap MB", "DOM nodes", "frame ms"],
    )
    table.add("1-run sweep page: reference", *cells(small))
    table.add(f"{runs:,}-run sweep page, open while it ran", *cells(live))
    table.add("the same page, loaded after", *cells(fresh))
    table.print()
    print(f"\nthe {runs:,}-run sweep took {took:.0f} s with the page open")


def cells(m: dict[str, float]) -> list[str]:
    return [f"{m['heap']:.1f}", f"{m['nodes']:.0f}", f"{m['frame']:.1f}"]


if __name__ == "__main__":
    main()
