"""The sweep list and the sweep page in Chromium, against a real daemon running real sweeps
whose runs finish when the test releases their gate files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.browser.support import (
    PY,
    ROOT,
    Daemon,
    Gates,
    attr,
    colour_counts,
    login,
    wait_for,
    wait_js,
)

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser

Shots = Callable[["WebDriver", str], Path]


def rows_in(state: str | None = None) -> str:
    """JS: how many run rows (in ``state``) the run table shows."""
    where = f'[data-state="{state}"]' if state else ""
    return f"document.querySelectorAll('table#runs tr[data-index]{where}').length"


def done_is(count: int) -> str:
    return (
        "const t = document.querySelector('table#runs');"
        f"return t !== null && t.getAttribute('data-done') === '{count}'"
    )


def test_sweep_list_shows_the_sweep(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    sweep = daemon.submit(gates.spec(2))
    login(driver, daemon)
    row = f'table#sweeps tr[data-sweep="{sweep}"]'
    wait_js(driver, f"return document.querySelector('{row}') !== null", "the sweep's row")
    wait_js(
        driver,
        f"return document.querySelector('{row}').getAttribute('data-state') === 'running'",
        "the sweep shown running",
    )
    shots(driver, "sweep-list-running")
    gates.release("all")
    wait_js(
        driver,
        f"return document.querySelector('{row}').getAttribute('data-state') === 'succeeded'",
        "the sweep shown succeeded, live",
    )
    shots(driver, "sweep-list-finished")


def test_run_table_fills_in_as_runs_finish(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    sweep = daemon.submit(gates.spec(4))
    login(driver, daemon, f"/sweeps/{sweep}")
    wait_js(driver, f"return {rows_in('running')} === 4", "4 running rows")
    assert attr(driver, "table#runs", "data-done") == "0"
    shots(driver, "sweep-running")
    for index in range(4):
        gates.release(index)
        wait_js(driver, done_is(index + 1), f"{index + 1} runs done")
        wait_js(
            driver,
            f"return document.querySelector('tr[data-index=\"{index}\"]')"
            ".getAttribute('data-state') === 'succeeded'",
            f"run {index} shown succeeded",
        )
        assert driver.execute_script(f"return {rows_in('running')}") == 3 - index
    wait_js(
        driver,
        f"return document.querySelector('#sweep[data-sweep=\"{sweep}\"]')"
        ".getAttribute('data-state') === 'succeeded'",
        "the sweep shown succeeded",
    )
    assert attr(driver, "table#runs", "data-rows") == "4"
    shots(driver, "sweep-finished")


def test_chart_draws_each_runs_series(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    sweep = daemon.submit(gates.spec(3, steps=8))
    login(driver, daemon, f"/sweeps/{sweep}")
    # Every point is reported before the gate: the chart fills while the runs still run.
    wait_js(
        driver,
        "const c = document.querySelector('#chart');"
        "return c !== null && c.getAttribute('data-series') === '3'"
        " && Number(c.getAttribute('data-points')) >= 24",
        "3 series of 8 points",
    )
    wait_js(
        driver,
        "return [...document.querySelectorAll('select#metric option')]"
        ".some(o => o.value === 'loss')",
        "loss offered in the metric chooser",
    )
    drawn = _wait_drawn(driver)
    assert len(drawn) == 3 and all(n > 0 for n in drawn.values()), drawn
    shots(driver, "sweep-chart")
    gates.release("all")


def _wait_drawn(driver: WebDriver) -> dict[str, int]:
    """The pixel count per series colour, once every series has some (a frame may still be
    pending when data-points is set)."""
    found: dict[str, int] = {}

    def every_colour(d: WebDriver) -> bool:
        found.clear()
        found.update(colour_counts(d))
        return bool(found) and all(n > 0 for n in found.values())

    wait_for(driver, every_colour, "pixels in every series colour")
    return found


def test_cli_run_sweep_in_the_same_home_appears(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots, tmp_path: Path
) -> None:
    login(driver, daemon)
    spec = tmp_path / "spec.yaml"
    spec.write_text(gates.spec(2))
    command = [PY, "-m", "orchestrator", "run", str(spec), "--home", str(daemon.home)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        sweep = wait_js(
            driver,
            "const r = document.querySelector('table#sweeps tr[data-sweep]');"
            "return r && r.getAttribute('data-state') === 'running' && r.dataset.sweep",
            "the CLI's sweep on the list, running",
        )
        shots(driver, "cli-sweep-listed")
        driver.get(f"{daemon.url}/sweeps/{sweep}")
        wait_js(driver, f"return {rows_in('running')} === 2", "its 2 running rows")
        gates.release(0)
        wait_js(driver, done_is(1), "1 run done")
        gates.release(1)
        wait_js(driver, done_is(2), "2 runs done")
        wait_js(
            driver,
            "return document.querySelector('#sweep').getAttribute('data-state') === 'succeeded'",
            "the CLI's sweep shown succeeded",
        )
        shots(driver, "cli-sweep-finished")
        assert proc.wait(timeout=60) == 0
    finally:
        gates.release("all")
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_compare_shows_only_the_params_that_differ(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    gates.release("all")
    values = [{"n": 0, "lr": 0.1}, {"n": 1, "lr": 0.1}]
    inputs = "{name: n, type: int}, {name: lr, type: float}"
    sweep = daemon.submit(gates.spec(2, values=values, inputs=inputs))
    daemon.wait_event("SweepFinished", sweep)
    runs = [daemon.run(f"{sweep}:{i}")["run"] for i in range(2)]
    login(driver, daemon, f"/compare?runs={runs[0]},{runs[1]}")
    wait_js(
        driver,
        "return document.querySelector('#compare[data-runs]') !== null"
        " && document.querySelectorAll('#compare-params tbody tr').length > 0",
        "the compare view's params",
    )
    names = driver.execute_script(
        "return [...document.querySelectorAll('#compare-params tbody tr')]"
        ".map(r => r.cells[0].textContent.trim())"
    )
    assert names == ["n"]
    shots(driver, "compare")


def test_submit_form_creates_a_sweep(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    gates.release("all")
    spec = gates.spec(
        2, inputs="{name: n, type: int}, {name: lr, type: float, value: 0.1, isOptional: true}"
    )
    login(driver, daemon, "/submit")
    driver.find_element("css selector", "textarea#spec").send_keys(spec)
    driver.find_element("css selector", "input#params").send_keys("lr=0.5")
    shots(driver, "submit-form")
    driver.find_element("css selector", "#submit").click()
    sweep = wait_js(
        driver,
        "const s = document.querySelector('#sweep[data-sweep]'); return s && s.dataset.sweep",
        "the new sweep's page",
    )
    # The page may add its chosen metric to the query string (``?metric=loss``) by now.
    assert urlsplit(driver.current_url).path.endswith(f"/sweeps/{sweep}")
    daemon.wait_event("SweepFinished", sweep)
    assert [daemon.run(f"{sweep}:{i}")["params"]["lr"] for i in range(2)] == [0.5, 0.5]
    wait_js(driver, done_is(2), "both runs done")
    shots(driver, "submitted-sweep")


def test_a_page_cut_off_catches_up_without_losing_or_doubling_rows(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    """The tab's event stream is closed (as a broken connection closes it) while runs end;
    opened again, the page shows every end, once, and goes on live."""
    sweep = daemon.submit(gates.spec(4))
    login(driver, daemon, f"/sweeps/{sweep}")
    wait_js(driver, f"return {rows_in('running')} === 4", "4 running rows")
    driver.execute_script("Orch.events.stop()")
    assert attr(driver, "#status", "data-state") == "offline"
    for index in (0, 1):
        gates.release(index)
    ended_while_cut_off(daemon, sweep, 2)
    assert attr(driver, "table#runs", "data-done") == "0"  # the page heard nothing
    driver.execute_script("Orch.events.start()")
    wait_js(driver, done_is(2), "both ends shown once the stream is back")
    wait_js(driver, "return document.querySelector('#status').dataset.state === 'live'", "live")
    gates.release(2)
    wait_js(driver, done_is(3), "an end after the reconnect shown too")
    assert attr(driver, "table#runs", "data-rows") == "4"
    indexes = driver.execute_script(
        "return [...document.querySelectorAll('tr[data-index]')].map(r => r.dataset.index)"
    )
    assert sorted(indexes) == ["0", "1", "2", "3"], indexes  # no row twice
    shots(driver, "sweep-reconnected")
    gates.release(3)


def ended_while_cut_off(daemon: Daemon, sweep: str, count: int) -> None:
    """Wait on the daemon's own stream (not the page's) until ``count`` runs succeeded."""
    ended: set[int] = set()
    with (
        daemon.api() as api,
        api.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as answer,
    ):
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "RunStateChanged":
                data = json.loads(line[6:])
                if data.get("sweep_id") == sweep and data.get("state") == "succeeded":
                    ended.add(data["index"])
                    if len(ended) >= count:
                        return
