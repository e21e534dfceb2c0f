"""Write the README's screenshots: ``docs/img/sweep-page.png`` (a finished 12-run sweep) and
``docs/img/run-page.png`` (one of its runs), from a real daemon in a temporary home and
Debian's chromium, as the browser tests drive them.

Run from the repository root: ``.venv/bin/python scripts/docs_screenshots.py [--out DIR]``
(needs ``scripts/setup-test-deps`` and the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the browser tests' helpers

from tests.browser.support import (  # noqa: E402
    Daemon,
    browser_missing,
    chromium,
    colour_counts,
    login,
    start_daemon,
    wait_for,
    wait_js,
)

RUNS = 12
EPOCHS = 30
#: A stand-in for training (standard library only): loss falls towards a floor set by the
#: learning rate and depth, with a little noise; one human line and one metrics line an epoch.
TRAIN = textwrap.dedent(
    """
    import argparse, json, math, random, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    random.seed(f"{args.lr}-{args.layers}")
    floor = 0.08 + abs(math.log10(args.lr) + 2.2) * 0.12 + 0.3 / args.layers
    speed = args.lr * 40 * (1 + args.layers / 8)
    for epoch in range(args.epochs):
        loss = floor + (2.3 - floor) * math.exp(-speed * epoch) + random.uniform(-0.03, 0.03)
        accuracy = max(0.0, min(1.0, 1.05 - loss / 2.3 + random.uniform(-0.01, 0.01)))
        print(f"epoch {epoch}: loss {loss:.4f} accuracy {accuracy:.3f}", flush=True)
        print(json.dumps({"metrics": {"loss": loss, "accuracy": accuracy}, "step": epoch}),
              flush=True)
        time.sleep(0.03)
    """
)
SPEC = textwrap.dedent(
    """
    version: 1.1
    kind: operation
    matrix:
      kind: grid
      concurrency: 12
      params:
        lr: {kind: choice, value: [0.001, 0.003, 0.01, 0.03]}
        layers: {kind: choice, value: [2, 4, 8]}
    component:
      inputs: [{name: lr, type: float}, {name: layers, type: int}]
      run:
        kind: job
        container:
          command: [python3, train.py, --epochs, "EPOCHS"]
          args: [--lr, "{{ lr }}", --layers, "{{ layers }}"]
    """
).replace("EPOCHS", str(EPOCHS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder")
    args = parser.parse_args()
    reason = browser_missing()
    if reason:
        sys.stderr.write(f"docs_screenshots: {reason}\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    folder = Path(tempfile.mkdtemp(prefix="orch-docs-", dir="/tmp"))
    proc = start_daemon(home)
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    try:
        daemon = Daemon(home, proc)
        (folder / "train.py").write_text(TRAIN)
        with daemon.api() as api:
            answer = api.post("/sweeps", json={"spec": SPEC, "base_dir": str(folder)})
        assert answer.status_code == 201, answer.text
        sweep = answer.json()["sweep"]
        daemon.wait_event("SweepFinished", sweep, timeout=120)
        with chromium() as browser:
            login(browser, daemon, f"/sweeps/{sweep}")
            browser.set_window_size(1280, 1160)
            wait_js(
                browser,
                "const c = document.querySelector('#chart');"
                f"return c && c.getAttribute('data-series') === '{RUNS}'"
                f" && Number(c.getAttribute('data-points')) >= {RUNS * EPOCHS}"
                " && document.querySelector('#best[data-index]') !== null",
                "the finished sweep's chart and best run",
            )
            wait_for(
                browser,
                lambda d: all(n > 0 for n in colour_counts(d, "#scatter").values()),
                "every run's point on the scatter",
            )
            browser.save_screenshot(str(args.out / "sweep-page.png"))
            best = browser.execute_script(
                "return document.querySelector('#best').getAttribute('data-index')"
            )
            browser.get(f"{daemon.url}/runs/{sweep}:{best}")
            browser.set_window_size(1280, 1200)
            wait_js(
                browser,
                "const c = document.querySelector('#run-charts div.chart[data-points]');"
                f"return c && Number(c.getAttribute('data-points')) === {EPOCHS}"
                " && document.querySelectorAll('#log-stdout div.line').length > 0",
                "the run's chart and log",
            )
            browser.save_screenshot(str(args.out / "run-page.png"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        drain.join(5)
        proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.write(f"wrote {args.out / 'sweep-page.png'} and {args.out / 'run-page.png'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
