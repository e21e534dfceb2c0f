"""The real command line, as a subprocess and in-process: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
    )


def test_quickstart_mapping_json_matches_the_tutorial() -> None:
    proc = run_cli("plan", str(QUICKSTART / "mapping.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["runs"]
    first, second = data["runs"]
    assert first["index"] == 0
    assert first["argv"][2:] == [
        "--conv1_size=32",
        "--conv2_size=64",
        "--dropout=0.25",
        "--hidden1_size=500",
        "--optimizer=adam",
        "--conv_activation=relu",
        "--dense_activation=relu",
        "--learning_rate=0.001",
        "--epochs=5",
    ]
    assert second["params"]["conv_activation"] == "sigmoid"
    assert second["params"]["dropout"] == 0.5
    assert "loss" not in first["params"]


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("grid", 16),
        ("grid_with_concurrency", 10),
        ("random", 10),
        ("random_with_concurrency", 10),
        ("early_stopping", 20),
    ],
)
def test_quickstart_variants_plan(cli: Callable[..., CliResult], name: str, count: int) -> None:
    result = cli("plan", str(QUICKSTART / f"{name}.yaml"), "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)["runs"]) == count


def test_table_output_shows_params_and_command(cli: Callable[..., CliResult]) -> None:
    result = cli("plan", str(QUICKSTART / "grid_with_concurrency.yaml"), "--limit", "2")
    assert result.code == 0
    assert "10 runs (grid, concurrency 2)" in result.out
    assert "[1] conv1_size=32" in result.out
    assert "$ python3 train.py --conv1_size=32" in result.out
    assert "[2]" not in result.out


def test_invalid_spec_exits_2_with_one_line_and_no_traceback(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{epochs: 5}, {epochs: 5.5}]}
        component:
          inputs: [{name: epochs, type: int}]
          run: {kind: job, container: {command: [train]}}
    """)
    proc = run_cli("plan", str(spec))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"{spec}: matrix.values[1].epochs: expected int, got 5.5\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1.0\nkind: operation\n", "version: expected 1.1, got 1.0"),
        ("version: 1.1\n", "kind: required key missing"),
        ("kind: operation\n", "version: required key missing"),
        ("version: 1.1\nkind: operation\nfoo: 1\n", "foo: unknown key"),
        ("version: 1.1\nkind: operation\nmatrix: [1\n", "invalid YAML: line"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("", "expected a mapping at the top level, got an empty file"),
        ("version: 1.1\nkind: operation\n", "one and only one of hubRef"),
        ("version: 1.1\nkind: operation\nname: 'bad name'\npathRef: x.yaml\n", "name: expected"),
        ("version: 1.1\nkind: operation\npathRef: missing.yaml\n", "pathRef target not found"),
    ],
)
def test_bad_files_get_clear_errors(
    cli: Callable[..., CliResult], write: Callable[..., Path], text: str, expected: str
) -> None:
    spec = write(text)
    result = cli("plan", str(spec))
    assert result.code == 2
    assert expected in result.err
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err


def test_alias_bomb_through_the_cli(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    result = cli("plan", str(write("\n".join(lines) + "\n")))
    assert result.code == 2
    assert "alias bomb" in result.err


def test_missing_file_and_bad_param_syntax(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = cli("plan", str(tmp_path / "nope.yaml"))
    assert (result.code, result.err.strip()) == (2, f"{tmp_path / 'nope.yaml'}: file not found")
    result = cli("plan", str(QUICKSTART / "mapping.yaml"), "-P", "epochs")
    assert result.code == 2
    assert "-P: expected NAME=VALUE, got 'epochs'" in result.err


def test_p_override_through_the_cli(cli: Callable[..., CliResult]) -> None:
    result = cli(
        "plan", str(QUICKSTART / "typed.yaml"), "-P", "epochs=3", "--json", "-P", "optimizer=sgd"
    )
    assert result.code == 0, result.err
    (run,) = json.loads(result.out)["runs"]
    assert run["params"]["epochs"] == 3
    assert "--optimizer=sgd" in run["argv"]


def test_an_adaptive_search_plans_its_searcher_and_an_example(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    spec = write(
        (QUICKSTART / "grid.yaml")
        .read_text()
        .replace("kind: grid", "kind: hyperband")
        .replace("    epochs:\n      kind: choice\n      value: [5, 10]\n", "")
        .replace(
            "  params:",
            "  maxIterations: 9\n  eta: 3\n  resource: {name: epochs, type: int}\n"
            "  metric: {name: loss, optimization: minimize}\n  seed: 1\n  params:",
        ),
        "h.yaml",
    )
    (Path(spec).parent / "typed.yaml").write_text((QUICKSTART / "typed.yaml").read_text())
    result = cli("plan", str(spec))
    assert result.code == 0, result.err
    assert "hyperband search" in result.out and "seed 1" in result.out
    assert "--epochs=9" in result.out  # the example runs the full resource
    as_json = cli("plan", str(spec), "--json")
    body = json.loads(as_json.out)
    assert body["search"]["kind"] == "hyperband" and body["search"]["seed"] == 1
    assert body["example"]["params"]["epochs"] == 9


def test_usage_errors_exit_2(cli: Callable[..., CliResult]) -> None:
    assert cli("plan").code == 2
    assert cli("frobnicate").code == 2
    assert cli("plan", "x.yaml", "--limit", "-1").code == 2


def test_home_is_accepted_before_and_after(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    spec = str(QUICKSTART / "mapping.yaml")
    assert cli("--home", str(tmp_path), "plan", spec).code == 0
    assert cli("plan", spec, "--home", str(tmp_path)).code == 0


def test_ignored_sections_are_reported_once(
    cli: Callable[..., CliResult], write: Callable[..., Path]
) -> None:
    spec = write("""
        version: 1.1
        kind: component
        queue: gpu
        run: {kind: job, container: {image: python:3.11, command: [x]}}
    """)
    result = cli("plan", str(spec))
    assert result.code == 0
    assert "note: component.queue: no local meaning, ignored" in result.err
    assert result.err.count("container.image") == 1


def test_help_is_fast_and_lazy() -> None:
    code = (
        "import sys, orchestrator.cli as c; c.build_parser().format_help(); "
        "heavy = {'jinja2', 'msgspec', 'yaml', 'httpx', 'anyio', 'rich'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.stdout.strip() == "[]"
    help_proc = run_cli("--help")
    assert help_proc.returncode == 0
    assert "plan" in help_proc.stdout


def test_limit_says_how_many_of_how_many(cli: Callable[..., CliResult]) -> None:
    result = cli("plan", str(QUICKSTART / "grid.yaml"), "--limit", "3")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].endswith("16 runs (grid), showing 3 of 16")
    assert "[2]" in result.out and "[3]" not in result.out
    everything = cli("plan", str(QUICKSTART / "grid.yaml"), "--limit", "16")
    assert "showing" not in everything.out
