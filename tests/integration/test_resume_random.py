"""Resuming an unseeded random search draws the same configurations: the seed it drew first
is journaled and reused (``resume``, ``rerun``, ``run --resume``), and shown so it can be pinned."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

SCRIPT = "import os, sys; sys.exit(1 if os.path.exists(sys.argv[1]) else 0)"


def _spec(write: Callable[..., Path], flag: Path) -> Path:
    command = json.dumps([sys.executable, "-c", SCRIPT, str(flag)])
    return write(
        f"""
        version: 1.1
        kind: operation
        matrix:
          kind: random
          numRuns: 4
          params:
            lr: {{kind: uniform, value: [0, 1]}}
            units: {{kind: choice, value: [8, 16, 32, 64, 128, 256, 512, 1024]}}
        component:
          inputs: [{{name: lr, type: float}}, {{name: units, type: int}}]
          run:
            kind: job
            container:
              command: {command}
        """
    )


def _configurations(result: CliResult) -> list[tuple[int, float, int]]:
    runs = json.loads(result.out)["runs"]
    return sorted((r["index"], r["params"]["lr"], r["params"]["units"]) for r in runs)


@pytest.mark.parametrize(
    "again",
    [["resume", "last"], ["rerun", "last", "--failed"], ["run", "{spec}", "--resume"]],
)
def test_resume_reuses_the_drawn_seed(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path, again: list[str]
) -> None:
    flag, home = tmp_path / "fail-now", str(tmp_path / "home")
    flag.touch()
    spec = _spec(write, flag)
    first = cli("run", str(spec), "--home", home, "--json")
    assert first.code == 1, first.err
    assert ", seed " in first.err, "the header says which seed was drawn"
    flag.unlink()
    args = [a.replace("{spec}", str(spec)) for a in again]
    second = cli(*args, "--home", home, "--json")
    assert second.code == 0, second.err
    assert _configurations(second) == _configurations(first), "the same four draws"
    assert {r["state"] for r in json.loads(second.out)["runs"]} == {"succeeded"}
