"""Small things a new user trips over: an empty mapping, ``resume`` where nothing ran, and a
mistyped command; each one line on stderr, exit 2, nothing created."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

EMPTY = """
    version: 1.1
    kind: operation
    matrix: {kind: mapping, values: []}
    component:
      inputs: [{name: i, type: int}]
      run: {kind: job, container: {command: [/bin/true]}}
"""


@pytest.mark.parametrize("command", ["plan", "run"])
def test_an_empty_mapping_says_so(
    command: str, cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(EMPTY)
    result = cli(command, str(spec), "--home", str(tmp_path / "h"))
    assert result.code == 2
    assert result.err == f"{spec}: matrix.values: the mapping has no entries\n"
    assert not (tmp_path / "h").exists()  # a spec that cannot run creates no home folder


@pytest.mark.parametrize("args", [["resume", "last"], ["rerun", "last", "--failed"]])
def test_resume_where_nothing_ran_creates_nothing(
    args: list[str], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    home = tmp_path / "h"
    result = cli(*args, "--home", str(home))
    assert result.code == 2
    assert result.err == f"orchestrator: no journal in {home} (run a sweep first, or pass --home)\n"
    assert not home.exists()


def test_a_mistyped_command_is_named_with_the_closest_one(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(EMPTY)
    result = cli("rnu", str(spec))
    assert (result.code, result.out) == (2, "")
    assert result.err == "orchestrator: error: unknown command 'rnu'; did you mean 'run'?\n"
    shown = cli("--home", str(tmp_path / "h"), "shwo", "last")
    assert shown.err == "orchestrator: error: unknown command 'shwo'; did you mean 'show'?\n"
    assert not (tmp_path / "h").exists()


def test_a_file_of_that_name_is_still_a_spec(
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(EMPTY, name="rnu")
    monkeypatch.chdir(tmp_path)
    result = cli("rnu")
    assert result.code == 2
    assert result.err == "rnu: matrix.values: the mapping has no entries\n"
