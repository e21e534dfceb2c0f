"""The run page in Chromium: its log tail follows the child's output line by line, and its
stop button stops the run's process."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import Daemon, Gates, login, wait_js
from tests.procwait import gone_within

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser

Shots = Callable[["WebDriver", str], Path]


def log_has(text: str) -> str:
    """JS: does the stdout tail have a line containing ``text``? (the line, or null)"""
    return (
        "const line = [...document.querySelectorAll('#log-stdout div.line')]"
        f".find(l => l.textContent.includes({text!r}));"
        "return line ? line.textContent : null"
    )


def state_is(state: str) -> str:
    return (
        "const r = document.querySelector('#run[data-state]');"
        f"return r !== null && r.getAttribute('data-state') === '{state}'"
    )


def test_log_tail_shows_lines_as_the_child_prints_them(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    sweep = daemon.submit(gates.spec(1))
    daemon.wait_event("RunCreated", sweep)  # the page of a run not created yet gives up
    login(driver, daemon, f"/runs/{sweep}:0")
    wait_js(driver, log_has("line 1 of run 0"), "the first line in the tail")
    assert driver.execute_script(log_has("line 2 of run 0")) is None  # not printed yet
    wait_js(driver, state_is("running"), "the run shown running")  # its own stream
    shots(driver, "run-running")
    gates.release(0)
    wait_js(driver, log_has("line 2 of run 0"), "the second line, once printed")
    wait_js(driver, state_is("succeeded"), "the run shown succeeded")
    lines = driver.execute_script(
        "return [...document.querySelectorAll('#log-stdout div.line')].map(l => l.textContent)"
    )
    firsts = [i for i, line in enumerate(lines) if "line 1 of run 0" in line]
    seconds = [i for i, line in enumerate(lines) if "line 2 of run 0" in line]
    assert len(firsts) == 1 and len(seconds) == 1 and firsts[0] < seconds[0], lines
    wait_js(
        driver,
        "const c = document.querySelector('#run-charts div.chart[data-metric=\"loss\"]');"
        "return c !== null && Number(c.getAttribute('data-points')) === 5",
        "the run's loss chart with its 5 points",
    )
    shots(driver, "run-finished")


def test_stop_from_the_page_stops_the_run(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    sweep = daemon.submit(gates.spec(1))
    daemon.wait_event("RunCreated", sweep)  # the page of a run not created yet gives up
    login(driver, daemon, f"/runs/{sweep}:0")
    first = wait_js(driver, log_has("line 1 of run 0"), "the child running")
    found = re.search(r"pid (\d+)", first)
    assert found, first
    pid = int(found.group(1))
    wait_js(driver, state_is("running"), "the run shown running")
    driver.find_element("css selector", "#stop-run").click()
    _accept_confirmation(driver)
    wait_js(driver, state_is("stopped"), "the run shown stopped")
    assert gone_within(pid, 30), "the child's process ended"
    assert daemon.run(f"{sweep}:0")["state"] == "stopped"
    shots(driver, "run-stopped")


def _accept_confirmation(driver: WebDriver) -> None:
    """Accept a confirm() the stop button may ask, if it asks one."""
    from selenium.common.exceptions import NoAlertPresentException

    with contextlib.suppress(NoAlertPresentException):
        driver.switch_to.alert.accept()


def test_the_page_of_a_run_not_created_yet_waits_for_it(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots
) -> None:
    spec = gates.spec(2).replace("concurrency: 2", "concurrency: 1")  # run 1 waits for run 0
    assert "concurrency: 1" in spec
    sweep = daemon.submit(spec)
    daemon.wait_event("RunCreated", sweep)
    login(driver, daemon, f"/runs/{sweep}:1")
    wait_js(
        driver,
        "return document.body.textContent.includes('Waiting for run')",
        "the page saying it waits for the run",
    )
    shots(driver, "run-waiting")
    gates.release(0)
    wait_js(driver, log_has("line 1 of run 1"), "run 1's first line, once it started")
    gates.release(1)
    wait_js(driver, state_is("succeeded"), "run 1 shown succeeded")
