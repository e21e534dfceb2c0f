"""The example third-party plugin, loaded through its entry point like an installed package."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, StaticHandler

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "orchestrator-notify"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``pip install`` leaves behind: the package on sys.path and a dist-info folder
    holding its entry point (read from the example's own pyproject.toml)."""
    dist = tmp_path / "site" / "orchestrator_notify-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: orchestrator-notify\nVersion: 0.1.0\n"
    )
    pyproject = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    group = pyproject["project"]["entry-points"]["orchestrator.plugins"]
    lines = "".join(f"{name} = {target}\n" for name, target in group.items())
    (dist / "entry_points.txt").write_text(f"[orchestrator.plugins]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_example_plugin_is_listed_and_notifies(
    installed: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = json.loads(cli("plugins", "--json").out)
    notify = next(p for p in listing if p["name"] == "notify")
    assert notify["hooks"] == ["on_sweep_finished"]
    assert "orchestrator-notify 0.1.0" in notify["source"]

    log = tmp_path / "notes.log"
    monkeypatch.setenv("ORCHESTRATOR_NOTIFY_FILE", str(log))
    monkeypatch.setenv("ORCHESTRATOR_NOTIFY_URL", f"{server}/hook")
    StaticHandler.posted.clear()
    spec = write("""
        version: 1.1
        kind: component
        run: {kind: job, container: {command: [/bin/true]}}
    """)
    result = cli(str(spec), "--json", "--home", str(tmp_path / "home"))
    assert result.code == 0, result.err
    sweep = json.loads(result.out)["sweep"]
    assert log.read_text().strip().endswith(f"sweep {sweep[:12]} succeeded: 1 succeeded")
    ((path, body),) = StaticHandler.posted
    assert path == "/hook"
    assert json.loads(body) == {
        "sweep": sweep,
        "state": "succeeded",
        "reason": None,
        "counts": {"succeeded": 1},
    }
    denied = cli(str(spec), "--no-plugin", "notify", "--home", str(tmp_path / "home"))
    assert denied.code == 0
    assert len(log.read_text().splitlines()) == 1, "--no-plugin keeps it out"
