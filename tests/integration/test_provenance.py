"""Where each run ran, in the journal: code (commit, dirty flag, the diff), interpreter,
packages, machine, and the environment with secrets redacted; shown by ``show`` and compared
by ``diff``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.git_repo import committed_repo

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: mapping
  values: [{{n: 1}}, {{n: 2}}]
component:
  inputs: [{{name: n, type: int}}]
  run:
    kind: job
    container:
      command: ["{python}", "train.py", "{{{{ n }}}}"]
      env:
        - {{name: DB_PASSWORD, value: hunter2}}
        - {{name: MODE, value: fast}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the spec and its script, with one uncommitted change."""
    repo = committed_repo(
        tmp_path / "project",
        {
            "train.py": "import sys\nprint(sys.argv[1])\n",
            "spec.yaml": SPEC.format(python=sys.executable),
        },
    )
    (repo / "train.py").write_text("import sys\nprint('changed', sys.argv[1])\n")
    (repo / "notes.txt").write_text("untracked\n")
    return repo


def test_a_run_records_its_code_machine_and_a_redacted_environment(
    repo: Path, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    home = tmp_path / "home"
    assert cli("run", str(repo / "spec.yaml"), "--home", str(home)).code == 0
    run = json.loads(cli("show", "last:0", "--home", str(home), "--json").out)
    made = run["provenance"]
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert made["git_commit"] == head and made["git_dirty"] is True
    assert "+print('changed', sys.argv[1])" in made["diff"]
    assert "untracked: notes.txt" in made["diff"]
    assert made["python"] == sys.executable and made["host"]
    assert any(line.startswith("msgspec==") for line in made["packages"].splitlines())
    assert made["environment"]["MY_API_TOKEN"] == "<redacted>"
    assert run["env"] == {"DB_PASSWORD": "<redacted>", "MODE": "fast"}
    # Nowhere in the journal, nor in what show prints.
    journal = (home / "journal.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in home.glob("journal.sqlite-*")
    )
    assert b"s3cr3t-value" not in journal and b"hunter2" not in journal
    text = cli("show", "last:0", "--home", str(home)).out
    assert f"git {head[:12]}, dirty" in text and "s3cr3t" not in text


def _fake_distribution(site: Path, version: str) -> None:
    dist = site / f"fakepkg-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")


def test_diff_shows_a_changed_param_and_a_changed_package_version(
    repo: Path, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    for version in ("1.0", "2.0"):
        with monkeypatch.context() as patched:
            site = tmp_path / f"site-{version}"
            _fake_distribution(site, version)
            patched.syspath_prepend(str(site))
            assert cli("run", str(repo / "spec.yaml"), "--home", home).code == 0
    sweeps = [s["id"] for s in json.loads(cli("ls", "--home", home, "--json").out)]
    newer, older = sweeps
    body = json.loads(cli("diff", f"{older}:0", f"{newer}:1", "--home", home, "--json").out)
    assert body["differs"]["params"] == {"n": [1, 2]}
    assert body["differs"]["packages"] == {"fakepkg": ["1.0", "2.0"]}
    text = cli("diff", f"{older}:0", f"{newer}:1", "--home", home).out
    assert "packages.fakepkg: 1.0 → 2.0" in text and "params.n: 1 → 2" in text


def test_runs_start_while_the_provenance_is_collected_and_still_find_it(
    repo: Path, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting the provenance (git, every installed distribution) takes tens of
    milliseconds: the first run does not wait for it. The record is journaled before the
    sweep ends, stamped with the invocation's start, so every run of it finds it."""
    from orchestrator import provenance
    from orchestrator.engine import sweep as sweep_module
    from orchestrator.engine import transitions
    from orchestrator.engine.states import RunState

    running = threading.Event()
    seen: list[bool] = []
    real_collect, real_move = provenance.collect, transitions.move_run

    def collect_once_a_run_runs(folder: Path, environment: Any) -> Any:
        seen.append(running.wait(30))  # the old order (collect, then run) never sets it
        return real_collect(folder, environment)

    def move_run(*args: Any, **kwargs: Any) -> Any:
        event = real_move(*args, **kwargs)
        if args[3] is RunState.RUNNING:
            running.set()
        return event

    monkeypatch.setattr(sweep_module, "collect", collect_once_a_run_runs)
    monkeypatch.setattr(sweep_module, "move_run", move_run)
    home = tmp_path / "home"
    assert cli("run", str(repo / "spec.yaml"), "--home", str(home)).code == 0
    assert seen == [True]
    for index in (0, 1):
        run = json.loads(cli("show", f"last:{index}", "--home", str(home), "--json").out)
        assert run["provenance"]["git_dirty"] is True
