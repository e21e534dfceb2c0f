"""``scripts/setup-test-deps``: where it cannot install the browser it says why in one line
and exits 0 (the browser tests then skip with that reason), and installs nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser import support
from tests.browser.support import ROOT

SCRIPT = ROOT / "scripts" / "setup-test-deps"
#: What the script needs besides apt: linked into a bare PATH.
TOOLS = ("bash", "grep", "mktemp", "rm", "tail", "timeout")


def bare_path(folder: Path, **fakes: str) -> str:
    """A PATH folder with only TOOLS and the given fake commands (name -> shell body)."""
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    for name, body in fakes.items():
        fake = folder / name
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(0o755)
    return str(folder)


def setup(path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env
    )


def test_without_apt_it_says_so_and_succeeds(tmp_path: Path) -> None:
    done = setup(bare_path(tmp_path / "bin", id="echo 0"))
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "setup-test-deps: cannot install chromium chromium-driver fonts-dejavu-core: "
        "no apt-get on this machine; the browser tests will be skipped"
    ]


def test_not_root_without_sudo_it_says_so_and_installs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "apt-called"
    path = bare_path(tmp_path / "bin", id="echo 1000", **{"apt-get": f"touch {marker}"})
    done = setup(path)
    assert done.returncode == 0
    assert done.stdout.strip().endswith(
        "not root and no password-less sudo; the browser tests will be skipped"
    )
    assert done.stdout.count("\n") == 1
    assert not marker.exists()


def test_a_failing_apt_is_one_line_too(tmp_path: Path) -> None:
    path = bare_path(tmp_path / "bin", id="echo 0", **{"apt-get": "echo 'E: no network'; exit 100"})
    done = setup(path)
    assert done.returncode == 0
    assert done.stdout == (
        "setup-test-deps: cannot install chromium chromium-driver fonts-dejavu-core: "
        "apt-get update failed (E: no network); the browser tests will be skipped\n"
    )


def test_the_skip_reason_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "CHROMIUM", Path("/nonexistent/chromium"))
    reason = support.browser_missing()
    assert reason is not None
    assert reason.startswith("/nonexistent/chromium missing: run scripts/setup-test-deps")
