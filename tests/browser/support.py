"""What the browser tests share: the daemon process, the gated runs' script, waiting in the
page, counting the chart's pixels by colour."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from orchestrator.diagnostics import is_ready_record
from orchestrator.store.layout import daemon_info_path
from tests.procwait import alive, gone_within

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: DAEMON.md §6: root needs --no-sandbox; the rest keep Chromium from phoning home.
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
#: Generous: two cores shared with other work; a wait ends as soon as its condition holds.
WAIT_S = 30.0

#: A run's script: prints a line, reports ``steps`` metric points, waits for its gate file
#: (``go-INDEX`` or ``go-all``, at most 60 s: never left hanging), prints a second line, exits.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    gates, index, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(f"line 1 of run {index} pid {os.getpid()}", flush=True)
    for step in range(steps):
        loss = (1 + index) / (1 + step) + 0.05 * index
        print(json.dumps({"metrics": {"loss": loss}, "step": step}), flush=True)
    deadline = time.monotonic() + 60
    while not ((gates / f"go-{index}").exists() or (gates / "go-all").exists()):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.02)
    print(f"line 2 of run {index}", flush=True)
    """
)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} missing: run scripts/setup-test-deps (apt-get install {package})"
    if importlib.util.find_spec("selenium") is None:
        return "selenium missing: pip install -e '.[dev]'"
    return None


class Gates:
    """Files the runs' scripts wait for: the test decides when each run finishes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.script = folder / "child.py"
        self.script.write_text(CHILD)

    def release(self, index: int | str) -> None:
        (self.folder / f"go-{index}").touch()

    def spec(
        self,
        count: int,
        steps: int = 5,
        *,
        values: list[dict[str, Any]] | None = None,
        inputs: str = "{name: n, type: int}",
    ) -> str:
        """A mapping sweep of ``count`` runs of the gated script (``values``: each run's
        params, ``n`` being its gate's index), all allowed to run at once."""
        values = values or [{"n": i} for i in range(count)]
        command = [PY, str(self.script), str(self.folder), "{{ n }}", str(steps)]
        return (
            "version: 1.1\nkind: operation\n"
            f"matrix: {{kind: mapping, concurrency: {count}, values: {json.dumps(values)}}}\n"
            f"component:\n  inputs: [{inputs}]\n"
            f"  run: {{kind: job, container: {{command: {json.dumps(command)}}}}}\n"
        )


class Daemon:
    """A daemon process serving ``home`` on its socket and a loopback port."""

    def __init__(self, home: Path, proc: subprocess.Popen[str]) -> None:
        self.home = home
        self.proc = proc
        self.info: dict[str, Any] = json.loads(daemon_info_path(home).read_text())
        self.url = f"http://127.0.0.1:{self.info['port']}"

    def login_url(self) -> str:
        """A new one-time sign-in link, as ``orchestrator web`` asks for one."""
        with self.api() as api:
            answer = api.post("/web-login")
        assert answer.status_code == 201, answer.text
        url: str = answer.json()["url"]
        return url

    def api(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.info["socket"]),
            base_url="http://daemon/api/v1",
            timeout=httpx.Timeout(10, read=None),
        )

    def submit(self, spec: str) -> str:
        with self.api() as api:
            answer = api.post("/sweeps", json={"spec": spec})
        assert answer.status_code == 201, answer.text
        sweep: str = answer.json()["sweep"]
        return sweep

    def wait_event(self, kind: str, sweep: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """The first event ``kind`` of ``sweep`` on the daemon's stream, replayed from its
        start (so one that came before the call counts)."""
        deadline = time.monotonic() + timeout
        with (
            self.api() as api,
            api.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as answer,
        ):
            event = ""
            for line in answer.iter_lines():
                if time.monotonic() > deadline:
                    break
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == kind:
                    data: dict[str, Any] = json.loads(line[6:])
                    if data.get("sweep_id") == sweep:
                        return data
        raise AssertionError(f"no {kind} of sweep {sweep} within {timeout:g}s")

    def run(self, ref: str) -> dict[str, Any]:
        with self.api() as api:
            answer = api.get(f"/runs/{ref}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def start_daemon(home: Path, max_runs: int = 16) -> subprocess.Popen[str]:
    limits = ["--max-runs", str(max_runs), "--grace", "2"]
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", "daemon", "--home", str(home), "--port", "0", *limits],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the daemon logs "ready" once it serves
        if is_ready_record(line):
            return proc
    raise AssertionError(f"daemon did not start: exit {proc.wait()}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (chromedriver's browser and its helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(") ", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    """Chromium through chromedriver with a fresh profile; quit, then whatever of it is left
    is killed by pid."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="orch-chromium-", dir="/tmp")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER))
    browser = webdriver.Chrome(service=service, options=options)
    pids: list[int] = []
    try:
        browser.set_script_timeout(WAIT_S)
        yield browser
    finally:
        if service.process is not None:
            pids = [service.process.pid, *descendants(service.process.pid)]
        browser.quit()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                gone_within(pid, 10)
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait (WebDriverWait, generous timeout) until ``condition`` is truthy; its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(condition, what)
    except TimeoutException:
        text = browser.execute_script("return document.body ? document.body.innerText : ''")
        shown = " | ".join(str(text).split("\n"))[:600]
        where = browser.current_url
        raise AssertionError(f"{what}: not within {WAIT_S:g}s at {where}: {shown}") from None


def wait_js(browser: WebDriver, script: str, what: str) -> Any:
    """Wait until a JavaScript expression (``return ...``) is truthy; its value."""
    return wait_for(browser, lambda d: d.execute_script(script), what)


def attr(browser: WebDriver, selector: str, name: str) -> str | None:
    """An attribute of the first element matching ``selector`` (None: no such element)."""
    value = browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e === null ? null : e.getAttribute(arguments[1]);",
        selector,
        name,
    )
    return None if value is None else str(value)


def login(browser: WebDriver, daemon: Daemon, path: str = "/") -> None:
    """Open a one-time sign-in link (sets the session cookie), then ``path``; wait until the
    event stream is open (``#status`` reads ``live``)."""
    browser.get(daemon.login_url())
    if path != "/":
        browser.get(daemon.url + path)
    wait_js(
        browser,
        "const s = document.querySelector('#status'); return s && s.textContent.trim() === 'live'",
        "#status reads live",
    )


#: Pixels per colour of ``#chart[data-colors]`` on the chart's canvases (a small tolerance
#: per channel for antialiasing).
COUNT_COLOURS = """
const chart = document.querySelector(arguments[0]);
const colors = JSON.parse(document.querySelector(arguments[1]).getAttribute('data-colors') || '[]');
const want = colors.map(c => [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)));
const counts = colors.map(() => 0);
for (const canvas of chart.querySelectorAll('canvas')) {
  if (!canvas.width || !canvas.height) continue;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] < 160) continue;
    for (let k = 0; k < want.length; k++) {
      const w = want[k];
      if (Math.abs(data[i] - w[0]) <= 12 && Math.abs(data[i + 1] - w[1]) <= 12
          && Math.abs(data[i + 2] - w[2]) <= 12) counts[k]++;
    }
  }
}
return {colors: colors, counts: counts};
"""


def colour_counts(
    browser: WebDriver, selector: str = "#chart", colours: str = "#chart"
) -> dict[str, int]:
    """How many pixels of the canvases in ``selector`` are drawn in each colour of
    ``colours``'s ``data-colors`` (the overlaid chart's series colours)."""
    found = browser.execute_script(COUNT_COLOURS, selector, colours)
    return dict(zip(found["colors"], found["counts"], strict=True))
