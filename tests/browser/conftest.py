"""Browser tests: a real daemon (subprocess, real journal, real sweeps of tiny scripts) and
Debian's chromium driven by selenium through chromium-driver.

Skipped, with the reason, when chromium, chromedriver or selenium is missing: run
``scripts/setup-test-deps`` (``.ci/run`` does) and ``pip install -e '.[dev]'``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import (
    Daemon,
    Gates,
    browser_missing,
    chromium,
    start_daemon,
)
from tests.daemon_process import daemon_process

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(autouse=True)
def _need_browser(request: pytest.FixtureRequest) -> None:
    """Tests marked ``browser`` skip, saying why, where there is no browser to drive."""
    reason = browser_missing()
    if reason and request.node.get_closest_marker("browser") is not None:
        pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture
def gates() -> Iterator[Gates]:
    folder = Path(tempfile.mkdtemp(prefix="orch-gates-", dir="/tmp"))
    try:
        yield Gates(folder)
    finally:
        (folder / "go-all").touch()  # nothing waits past the test
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with daemon_process(start_daemon, stop_timeout=30) as (home, proc):
        yield Daemon(home, proc)


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[WebDriver, str], Path]:
    """``shots(driver, name)`` saves a screenshot to $ORCHESTRATOR_SCREENSHOTS (or a
    temporary folder) and returns its path."""
    chosen = os.environ.get("ORCHESTRATOR_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def shoot(browser: WebDriver, name: str) -> Path:
        path = folder / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"no screenshot {path}"
        return path

    return shoot
