"""``init`` cannot write outside the run's folder, make a setuid or world-writable file, or
make git run a command; a refusal fails that run with one line, and the sweep goes on.

The git cases run a real ``git`` against a local bare repository."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from orchestrator.exceptions import ExecutorError
from orchestrator.executors.init import prepare_init
from orchestrator.spec import models as m
from tests.conftest import CliResult

PY = sys.executable


class Run:
    """A run folder as the executor lays it out, and a place outside it."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.dir = self.home / "runs" / "r1"
        self.artifacts = self.dir / "artifacts"
        self.dir.mkdir(parents=True)
        self.outside = tmp / "outside"
        self.outside.mkdir()
        self.cache = self.home / "cache" / "git"

    def init(self, *entries: m.Init) -> None:
        anyio.run(prepare_init, list(entries), self.artifacts, self.cache)

    def refused(self, *entries: m.Init) -> str:
        with pytest.raises(ExecutorError) as caught:
            self.init(*entries)
        message = str(caught.value)
        assert "\n" not in message
        return message


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def file_init(
    content: str = "hi",
    filename: str | None = None,
    chmod: str | None = None,
    path: str | None = None,
) -> m.Init:
    return m.Init(file=m.FileInit(content=content, filename=filename, chmod=chmod), path=path)


def git_init(
    url: str, flags: list[str] | None = None, revision: str | None = None, path: str | None = None
) -> m.Init:
    return m.Init(git=m.GitInit(url=url, flags=flags, revision=revision), path=path)


def everything_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# ------------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("filename", "path"),
    [
        ("../../../../outside/pwned", None),
        ("pwned", "../../../outside"),
        ("{outside}/pwned", None),
        ("pwned", "{outside}"),
        ("../../../../outside/pwned", "sub"),
    ],
)
def test_a_file_init_cannot_leave_the_run_folder(run: Run, filename: str, path: str | None) -> None:
    message = run.refused(
        file_init(
            filename=filename.format(outside=run.outside),
            path=path.format(outside=run.outside) if path else None,
        )
    )
    assert "outside the run's folder" in message
    assert everything_under(run.outside) == set()


def test_symlinks_do_not_lead_out_of_the_run_folder(run: Run) -> None:
    run.artifacts.mkdir()
    (run.artifacts / "door").symlink_to(run.outside)
    (run.artifacts / "trap").symlink_to(run.outside / "target")
    assert "outside the run's folder" in run.refused(file_init(filename="door/pwned"))
    assert "outside the run's folder" in run.refused(file_init(filename="trap"))
    assert "outside the run's folder" in run.refused(file_init(filename="x", path="door"))
    assert everything_under(run.outside) == set()
    (run.artifacts / "inner").symlink_to(run.dir / "outputs")
    run.init(file_init(filename="inner/ok.txt", content="inside"))  # a link that stays inside
    assert (run.dir / "outputs" / "ok.txt").read_text() == "inside"


def test_paths_inside_the_run_folder_still_work(run: Run) -> None:
    run.init(
        file_init(filename="a.txt", content="a"),
        file_init(filename="deep/b.txt", content="b", path="sub"),
        file_init(filename="c.txt", content="c", path=str(run.dir / "outputs")),
        file_init(filename="../d.txt", content="d"),  # artifacts/.. is the run folder
    )
    assert (run.artifacts / "a.txt").read_text() == "a"
    assert (run.artifacts / "sub" / "deep" / "b.txt").read_text() == "b"
    assert (run.dir / "outputs" / "c.txt").read_text() == "c"
    assert (run.dir / "d.txt").read_text() == "d"


@pytest.mark.parametrize(
    ("chmod", "reason"),
    [
        ("4777", "setuid"),
        ("4755", "setuid"),
        ("2755", "setgid"),
        ("1755", "sticky"),
        ("0777", "writable by everyone"),
        ("666", "writable by everyone"),
        ("o+w", "writable by everyone"),
        ("a=rwx", "writable by everyone"),
        ("u+s", "not an octal mode"),
        ("+t", "not an octal mode"),
        ("rm -rf", "not an octal mode"),
        ("99", "not an octal mode"),
    ],
)
def test_dangerous_modes_are_refused(run: Run, chmod: str, reason: str) -> None:
    message = run.refused(file_init(filename="script.sh", chmod=chmod))
    assert reason in message and chmod in message
    assert not (run.artifacts / "script.sh").exists(), "refused before anything is written"


@pytest.mark.parametrize(
    ("chmod", "expected"),
    [("755", 0o755), ("0o700", 0o700), ("0640", 0o640), ("+x", 0o755), ("u+x,go-rw", 0o700)],
)
def test_ordinary_modes_are_applied(run: Run, chmod: str, expected: int) -> None:
    old = os.umask(0o022)
    try:
        run.init(file_init(filename="script.sh", chmod=chmod))
    finally:
        os.umask(old)
    assert stat.S_IMODE((run.artifacts / "script.sh").stat().st_mode) == expected


# --------------------------------------------------------------------------------- git


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with one commit on ``main``, holding ``hello.py``."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.py").write_text("print('from the repo')\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        [*identity, "commit", "-q", "-m", "one"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    bare = tmp_path / "origin.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True
    )
    return bare


@pytest.mark.parametrize(
    "flags",
    [
        ["--depth", "1"],
        ["--depth=1", "--single-branch"],
        ["--branch", "main"],
        ["-b", "main", "--no-tags"],
        ["--filter=blob:none"],
        ["--recurse-submodules", "--shallow-submodules"],
        ["--depth 1"],  # one item, as some specs write it
    ],
)
def test_safe_flags_clone(run: Run, origin: Path, flags: list[str]) -> None:
    run.init(git_init(f"file://{origin}", flags=flags, path="code"))
    assert (run.artifacts / "code" / "hello.py").read_text() == "print('from the repo')\n"


def test_urls_git_accepts_safely_clone(run: Run, origin: Path) -> None:
    run.init(git_init(str(origin)), git_init(f"file://{origin}", path="again"))
    assert (run.artifacts / "origin" / "hello.py").exists()
    assert (run.artifacts / "again" / "hello.py").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--upload-pack=touch {marker}"],
        ["--upload-pack", "touch {marker}"],
        ["-u", "touch {marker}"],
        ["--config", "core.sshCommand=touch {marker}"],
        ["-c", "core.fsmonitor=touch {marker}"],
        ["--config=core.hooksPath={outside}"],
        ["--template={outside}"],
        ["--separate-git-dir={outside}/git"],
        ["--reference={outside}"],
        ["--depth", "--upload-pack=touch {marker}"],
        ["--branch=-x"],
        ["--single-branch=yes"],
    ],
)
def test_dangerous_flags_are_refused(
    run: Run, origin: Path, flags: list[str], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    given = [f.format(marker=marker, outside=run.outside) for f in flags]
    message = run.refused(git_init(f"file://{origin}", flags=given))
    assert message.startswith("init git: flag")
    assert not marker.exists(), "git never ran"
    assert everything_under(run.outside) == set()
    assert not run.cache.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("--upload-pack=touch {marker}", "looks like an option"),
        ("-oProxyCommand=touch {marker}", "looks like an option"),
        ("ext::sh -c touch% {marker}", "remote helpers"),
        ("fd::17", "remote helpers"),
        ("foo://example.com/repo", "scheme foo:// is not allowed"),
        ("ssh://-oProxyCommand=touch%20{marker}/repo", "may not start with '-'"),
        ("ssh://-oProxyCommand=x@host/repo", "may not start with '-'"),
        ("git@-oProxyCommand=x:repo", "neither a URL"),
        ("a b:c", "neither a URL"),
        ("https://example.com/repo\n--upload-pack=x", "control characters"),
        (" https://example.com/repo", "spaces"),
    ],
)
def test_dangerous_urls_are_refused(run: Run, url: str, reason: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    message = run.refused(git_init(url.format(marker=marker)))
    assert message.startswith("init git: url") and reason in message
    assert not marker.exists()
    assert not run.cache.exists()


def test_scp_like_and_real_schemes_pass_the_check(run: Run) -> None:
    """They get as far as git (which cannot reach them here: no network)."""
    for url in ("git@example.invalid:org/repo.git", "ssh://git@example.invalid/org/repo"):
        message = run.refused(git_init(url, flags=["--depth", "1"]))
        assert message.startswith("git clone failed"), message


def test_git_paths_and_revisions_are_confined(run: Run, origin: Path) -> None:
    assert "outside the run's folder" in run.refused(git_init(str(origin), path=str(run.outside)))
    assert "outside the run's folder" in run.refused(git_init(str(origin), path="../../x"))
    assert "the run's folder itself" in run.refused(git_init(str(origin), path=".."))
    assert "revision" in run.refused(git_init(str(origin), revision="--orphan=x"))
    assert everything_under(run.outside) == set()
    assert not run.cache.exists(), "refused before anything was cloned"


# --------------------------------------------------------------------- through the CLI


def test_a_refused_init_fails_its_run_not_the_sweep(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          values: [{name: ok.txt}, {name: ../../../escaped.txt}]
        component:
          inputs: [{name: name, type: str}]
          run:
            kind: job
            init: [{file: {filename: "{{ name }}", content: hello}}]
            container: {command: [echo, ok]}
    """)
    home = tmp_path / "home"
    result = cli(str(spec), "--json", "--home", str(home), "--concurrency", "1")
    assert result.code == 1
    runs = json.loads(result.out)["runs"]
    assert [r["state"] for r in runs] == ["succeeded", "failed"]
    assert (
        runs[1]["reason"]
        == "init file: filename '../../../escaped.txt' is outside the run's folder"
    )
    assert not (home / "escaped.txt").exists()
    assert "Traceback" not in result.err


def test_a_new_run_home_is_private_and_an_existing_one_keeps_its_mode(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: component
        run: {kind: job, container: {command: [echo, secret]}}
    """)
    home = tmp_path / "new" / "home"
    assert cli(str(spec), "--home", str(home)).code == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "runs").stat().st_mode) == 0o700
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        if (home / name).exists():
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    assert cli(str(spec), "--home", str(shared)).code == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777, "a folder the user gave keeps its mode"
    assert stat.S_IMODE((shared / "journal.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((shared / "runs").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "cache").stat().st_mode) == 0o700
