"""``-P`` on a name the matrix also sets: the matrix wins (as in Polyaxon), and the command says
so in one line naming the input, from ``plan`` and ``run`` alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

PY = sys.executable
GRID = f"""
    version: 1.1
    kind: operation
    matrix:
      kind: grid
      params: {{steps: {{kind: choice, value: [1, 2]}}}}
    component:
      inputs: [{{name: steps, type: int}}, {{name: lr, type: float, value: 0.1}}]
      run: {{kind: job, container: {{command: ["{PY}", -c, "pass", "{{{{ steps }}}}"]}}}}
"""
WARNING = "orchestrator: warning: -P steps=8 is ignored: the matrix sets 'steps' for every run\n"


def test_plan_warns_that_the_matrix_overrides_the_param(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    result = cli("plan", str(write(GRID)), "-P", "steps=8", "--json")
    assert result.code == 0, result.err
    assert result.err == WARNING
    runs = json.loads(result.out)["runs"]
    assert [r["params"]["steps"] for r in runs] == [1, 2]


def test_run_warns_too(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    result = cli("run", str(write(GRID)), "-P", "steps=8", "--json", "--home", str(tmp_path / "h"))
    assert result.code == 0, result.err
    assert WARNING in result.err
    assert [r["params"]["steps"] for r in json.loads(result.out)["runs"]] == [1, 2]


def test_a_param_the_matrix_does_not_set_is_applied_without_a_word(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    result = cli("plan", str(write(GRID)), "-P", "lr=0.5", "--json")
    assert result.code == 0, result.err
    assert "warning" not in result.err
    assert {r["params"]["lr"] for r in json.loads(result.out)["runs"]} == {0.5}


def test_a_mapping_setting_it_in_some_entries_says_how_many(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{steps: 1}}, {{lr: 0.2}}, {{steps: 3}}]}}
        component:
          inputs: [{{name: steps, type: int}}, {{name: lr, type: float, value: 0.1}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "pass"]}}}}
    """)
    result = cli("plan", str(spec), "-P", "steps=8", "--json")
    assert result.code == 0, result.err
    assert result.err == (
        "orchestrator: warning: -P steps=8 is ignored in 2 of 3 runs: "
        "their mapping entries set 'steps'\n"
    )
    assert [r["params"]["steps"] for r in json.loads(result.out)["runs"]] == [1, 8, 3]
