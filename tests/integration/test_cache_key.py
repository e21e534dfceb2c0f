"""The cache key follows the content of the code, not git history, and `cache explain` says
why a run missed: real git repositories, real runs through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

PY = sys.executable
EARLY_STOP = "earlyStopping: [{kind: metric_early_stopping, metric: loss, value: VALUE, " + (
    "optimization: minimize}]"
)


class Repo:
    """A git repository in tmp_path holding ``train.py`` and ``spec.yaml``; runs append a line
    to ``marker`` (outside the repository) each time they execute."""

    def __init__(self, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
        self.root = tmp_path / "repo"
        self.root.mkdir()
        self.marker = tmp_path / "ran.txt"
        self.home = self.root / ".orchestrator"  # inside the repository, not ignored
        self.cli = cli
        self.git("init", "-q")
        self.write(
            "train.py", f"import sys; open({str(self.marker)!r}, 'a').write(sys.argv[1] + '\\n')\n"
        )
        self.spec(values="[{a: 1}]", stop="0.1")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            [
                "git",
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
                *args,
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout

    def write(self, name: str, text: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def spec(self, *, values: str, stop: str, folder: str = ".") -> None:
        command = f'["{PY}", "{self.root / "train.py"}", "{{{{ a }}}}"]'
        self.write(
            f"{folder}/spec.yaml",
            textwrap.dedent(
                f"""\
                version: 1.1
                kind: operation
                matrix:
                  kind: mapping
                  values: {values}
                  {EARLY_STOP.replace("VALUE", stop)}
                component:
                  inputs: [{{name: a, type: int}}]
                  run: {{kind: job, container: {{command: {command}}}}}
                """
            ),
        )

    def commit(self, message: str) -> None:
        self.git("add", "-A", "--", ".", ":!.orchestrator")  # the home stays untracked
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def sweep(self, folder: str = ".") -> list[str | None]:
        spec = self.root / folder / "spec.yaml"
        result = self.cli(str(spec), "--json", "--home", str(self.home))
        assert result.code == 0, result.err
        return [run["reason"] for run in json.loads(result.out)["runs"]]

    def explain(self, ref: str) -> str:
        result = self.cli("cache", "explain", ref, "--home", str(self.home))
        assert result.code == 0, result.err
        return result.out

    def executions(self) -> int:
        return len(self.marker.read_text().splitlines())


@pytest.fixture
def repo(tmp_path: Path, cli: Callable[..., CliResult]) -> Repo:
    return Repo(tmp_path, cli)


def test_editing_only_the_spec_file_still_hits(repo: Repo) -> None:
    repo.commit("first")
    assert repo.sweep() == [None]
    repo.spec(values="[{a: 1}]", stop="0.2")  # the early-stopping target, uncommitted
    assert repo.sweep() == ["cache_hit"]
    repo.commit("the new target")
    assert repo.sweep() == ["cache_hit"], "committing the spec file changes no code"
    assert repo.executions() == 1


def test_a_new_commit_with_the_same_tree_still_hits(repo: Repo) -> None:
    repo.commit("first")
    assert repo.sweep() == [None]
    repo.commit("same content, new commit")
    assert repo.sweep() == ["cache_hit"]
    repo.write("train.py", (repo.root / "train.py").read_text() + "# staged, not committed\n")
    repo.git("add", "train.py")
    assert repo.sweep() == [None], "a staged edit of the code is a change"
    repo.commit("the same content as the staged edit")
    assert repo.sweep() == ["cache_hit"], "committing what ran changes nothing"
    assert repo.executions() == 2


def test_orchestratorignore_and_untracked_files(repo: Repo) -> None:
    repo.write(".orchestratorignore", "notes/\n*.md\n")
    repo.write("notes/todo.txt", "one\n")
    repo.write("README.md", "hello\n")
    repo.commit("first")
    assert repo.sweep() == [None]
    repo.write("notes/todo.txt", "one\ntwo\n")  # tracked, ignored by .orchestratorignore
    repo.write("README.md", "hello again\n")
    repo.write("notes/new.txt", "untracked and ignored\n")
    assert repo.sweep() == ["cache_hit"], "what .orchestratorignore names does not count"
    repo.write("helper.py", "VALUE = 1\n")  # untracked, not ignored: code the run may import
    assert repo.sweep() == [None]
    repo.write("train.py", (repo.root / "train.py").read_text() + "# a real edit\n")
    assert repo.sweep() == [None], "a real code change misses"
    assert repo.executions() == 3


def test_code_outside_the_working_folder_counts(repo: Repo) -> None:
    repo.spec(values="[{a: 1}]", stop="0.1", folder="experiments")  # the working folder
    repo.write("lib/util.py", "SCALE = 1\n")
    repo.commit("first")
    assert repo.sweep("experiments") == [None]
    assert repo.sweep("experiments") == ["cache_hit"]
    repo.write("lib/util.py", "SCALE = 2\n")
    repo.commit("the library changed")
    assert repo.sweep("experiments") == [None], "train.py may import lib/: it counts"


def test_cache_explain_names_the_part_that_changed(repo: Repo) -> None:
    repo.commit("first")
    assert repo.sweep() == [None]
    first = repo.explain("last:0")
    assert "missed the cache" in first and "new configuration" in first
    assert repo.sweep() == ["cache_hit"]
    assert "was a cache hit" in repo.explain("last:0")
    repo.write("train.py", (repo.root / "train.py").read_text() + "# edited\n")
    repo.commit("edit")
    assert repo.sweep() == [None]
    code = repo.explain("last:0")
    assert "code changed: file " in code and "train.py " in code and "tree " in code, code
    repo.spec(values="[{a: 5}]", stop="0.1")
    assert repo.sweep() == [None]
    params = repo.explain("last:0")
    assert "params changed: a 1→5" in params, params
    assert "code changed" not in params, "only the params differ from the nearest entry"
    as_json = json.loads(
        repo.cli("cache", "explain", "last:0", "--json", "--home", str(repo.home)).out
    )
    assert {"part": "params", "name": "a", "old": 1, "new": 5} in as_json["changes"]


def test_cache_explain_bad_input(repo: Repo) -> None:
    home = str(repo.home)
    assert repo.cli("cache", "explain", "last:0", "--home", home).code == 2  # no journal yet
    assert repo.sweep() == [None]
    for args in (["explain"], ["explain", "nope"], ["explain", "last:9"], ["ls", "last:0"]):
        result = repo.cli("cache", *args, "--home", home)
        assert result.code == 2 and result.err.count("\n") == 1, (args, result.err)
