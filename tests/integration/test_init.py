"""``init`` sections: git clones (cached per url and revision) and files, before the run starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

PY = sys.executable


def make_repo(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "hello.py").write_text("print('from the repo')\n")
    commit = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]
    for args in (["init", "-q"], ["add", "."], commit):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_init_clones_once_per_url_and_revision(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    origin = tmp_path / "origin" / "demo-repo"
    commit = make_repo(origin)
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{i: 1}}, {{i: 2}}]}}
        component:
          run:
            kind: job
            init: [{{git: {{url: "{origin}", revision: "{commit}"}}}}]
            container:
              workingDir: "{{{{ globals.artifacts_path }}}}/demo-repo"
              command: ["{PY}", hello.py]
    """)
    home = tmp_path / "home"
    first = cli(str(spec), "--json", "--home", str(home))
    assert first.code == 0, first.err
    runs = json.loads(first.out)["runs"]
    for run in runs:
        stdout = home / "runs" / run["id"] / "stdout.log"
        assert stdout.read_text() == "from the repo\n"
    assert len(list((home / "cache" / "git").iterdir())) == 1
    shutil.rmtree(origin)
    again = cli(str(spec), "--json", "--home", str(home))
    assert again.code == 0, "the second sweep clones from the cache, not the origin"


def test_git_init_failure_fails_the_run_clearly(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: component
        run:
          kind: job
          init: [{{git: {{url: "{tmp_path / "nope"}"}}}}]
          container: {{command: ["{PY}", -c, pass]}}
    """)
    result = cli(str(spec), "--json", "--home", str(tmp_path / "home"))
    assert result.code == 1
    (run,) = json.loads(result.out)["runs"]
    assert run["state"] == "failed"
    assert run["reason"].startswith("git clone failed:")


def test_file_init_writes_content_before_start(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: component
        inputs: [{{name: word, type: str, value: bird}}]
        run:
          kind: job
          init: [{{file: {{filename: script.py, content: "print('the word is {{{{ word }}}}')"}}}}]
          container:
            workingDir: "{{{{ globals.artifacts_path }}}}"
            command: ["{PY}", script.py]
    """)
    result = cli(str(spec), "--json", "--home", str(tmp_path / "home"))
    assert result.code == 0, result.err
    (run,) = json.loads(result.out)["runs"]
    log = tmp_path / "home" / "runs" / run["id"] / "stdout.log"
    assert log.read_text() == "the word is bird\n"
