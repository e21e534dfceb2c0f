"""The final table of ``run`` and the tables of ``show`` and ``ls``, with real runs: short
states with each long reason once, ``cached``, the best run, outputs and params the same in
both, ``--sort -METRIC``, the attempt column, runs never started, and how to resume."""

from __future__ import annotations

import io
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.conftest import CliResult

PY = sys.executable
#: Run ``i`` reports accuracy and loss, then waits to be stopped (no slot frees before).
EARLY = (
    "import json, sys, time; i = int(sys.argv[1]); "
    "print(json.dumps({'metrics': {'loss': 1.0 + i, 'accuracy': [0.5, 0.7, 0.95][i]}}), "
    "flush=True); time.sleep(600)"
)


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, CliResult]:
    """Three runs at once and a fourth that never starts: run 2 reaches the target and the
    sweep stops. Its home folder and what ``run`` printed."""
    folder = tmp_path_factory.mktemp("early")
    spec = folder / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          concurrency: 3
          values: [{{i: 0}}, {{i: 1}}, {{i: 2}}, {{i: 3}}]
          earlyStopping:
          - {{kind: metric_early_stopping, metric: accuracy, value: 0.9, optimization: maximize}}
        component:
          inputs: [{{name: i, type: int}}, {{name: fixed, type: int, value: 7, isOptional: true}}]
          outputs: [{{name: loss, type: float}}, {{name: accuracy, type: float}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "{EARLY}", "{{{{ i }}}}"]}}}}
        """)
    )
    home = str(folder / "home")
    ran = in_process(str(spec), "--nocache", "--home", home)
    assert ran.code == 0, ran.err
    return home, ran


def in_process(*args: str) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return CliResult(code, out.getvalue(), err.getvalue())


REASON = "early stopping: run 2 reported accuracy = 0.95 (>= 0.9) at step 1"


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the table in ``text`` by index: their cells (split on 2+ spaces)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#  "))
    rows = {}
    for line in lines[start + 1 :]:
        if not line or not line[0].isdigit():
            break
        cells = re.split(r"\s{2,}", line)
        rows[cells[0]] = cells
    return rows


def below_table(text: str) -> str:
    """What ``run`` prints after the rows and before its ``sweep ...`` line."""
    return text[: text.index("\nsweep ")]


def test_long_reason_is_a_short_state_printed_in_full_once_below(
    early: tuple[str, CliResult],
) -> None:
    _, ran = early
    rows = table_rows(ran.out)
    assert set(rows) == {"0", "1", "2"}
    for cells in rows.values():  # index, state, duration, outputs, params
        assert cells[1] == "stopped: early stop", ran.out
    table = below_table(ran.out)
    assert table.count(REASON) == 1, table
    assert f"\nearly stop (#0 #1 #2): {REASON}\n" in table


def test_best_run_and_runs_never_started(early: tuple[str, CliResult]) -> None:
    _, ran = early
    table = below_table(ran.out)
    assert "\n1 of 4 runs not started\n" in table
    assert "\nbest run by accuracy (maximize): #2 accuracy=0.95 (i=2)\n" in table


def test_run_and_show_print_the_same_outputs_and_params(early: tuple[str, CliResult]) -> None:
    home, ran = early
    run_rows = table_rows(ran.out)
    assert run_rows["2"][5:] == ["accuracy=0.95 loss=3", "i=2"]  # outputs by name
    assert "\nsame in every run: fixed=7\n" in below_table(ran.out)
    shown = in_process("show", "last", "--home", home)
    assert shown.code == 0, shown.err
    show_rows = table_rows(shown.out)
    for index, cells in run_rows.items():  # all but the duration (measured, then journaled)
        assert show_rows[index][:2] + show_rows[index][3:] == cells[:2] + cells[3:]
    assert "\nsame in every run: fixed=7\n" in shown.out
    assert shown.out.count(REASON) == 2  # the sweep's reason above, the runs' below


def test_show_sort_descending_with_a_space(early: tuple[str, CliResult]) -> None:
    home, _ = early
    by_accuracy = in_process("show", "last", "--sort", "-accuracy", "--home", home)
    assert by_accuracy.code == 0, by_accuracy.err
    # 2 first; 0 and 1 may have been stopped before they reported.
    assert next(iter(table_rows(by_accuracy.out))) == "2"
    assert in_process("show", "last", "--sort=-accuracy", "--home", home).out == by_accuracy.out
    assert in_process("show", "last", "--home", home, "--sort", "-loss").code == 0
    assert in_process("show", "last", "--sort", "--json", "--home", home).code == 2


def test_ls_counts_add_up_to_the_sweeps_runs(early: tuple[str, CliResult]) -> None:
    home, _ = early
    listed = in_process("ls", "--home", home)
    assert "3 stopped, 1 not started" in listed.out, listed.out


def test_cache_hits_say_cached(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{i: 0}}, {{i: 1}}]}}
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "pass", "{{{{ i }}}}"]}}}}
    """)
    home = str(tmp_path / "home")
    assert cli(str(spec), "--home", home).code == 0
    again = cli(str(spec), "--home", home)
    assert again.code == 0, again.err
    assert [cells[1] for cells in table_rows(again.out).values()] == ["cached", "cached"]
    said = sorted(line.split()[:2] for line in again.err.splitlines() if line.startswith("#"))
    assert said == [["#0", "cached"], ["#1", "cached"]]  # the live lines say it alike
    shown = cli("show", "last", "--home", home)
    assert [cells[1] for cells in table_rows(shown.out).values()] == ["cached", "cached"]


def failing_spec(write: Callable[..., Path]) -> Path:
    """Two runs: the second exits 3."""
    exits = "import sys; sys.exit(int(sys.argv[1]))"
    return write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{code: 0}}, {{code: 3}}]}}
        component:
          inputs: [{{name: code, type: int}}]
          run:
            kind: job
            container: {{command: ["{PY}", -c, "{exits}", "{{{{ code }}}}"]}}
    """)


def test_failed_sweep_says_how_to_resume_and_rerun(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = str(tmp_path / "home")
    first = cli(str(failing_spec(write)), "--home", home)
    assert first.code == 1
    sweep = re.search(r"^sweep ([0-9a-f]{12}) failed", first.out, re.M)
    assert sweep is not None, first.out
    command = r"\S+ -m orchestrator"
    where = re.escape(f" --home {home}")
    assert re.search(rf"^resume: {command} resume {sweep.group(1)}{where}$", first.err, re.M)
    assert re.search(
        rf"^re-run only the failed runs: {command} rerun {sweep.group(1)} --failed{where}$",
        first.err,
        re.M,
    ), first.err


def test_show_all_has_an_attempt_column(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = str(tmp_path / "home")
    assert cli(str(failing_spec(write)), "--home", home).code == 1
    assert cli("rerun", "last", "--failed", "--home", home).code == 1
    every = cli("show", "last", "--all", "--home", home)
    assert every.code == 0, every.err
    header = next(line for line in every.out.splitlines() if line.startswith("#  "))
    assert re.split(r"\s{2,}", header)[:3] == ["#", "attempt", "state"]
    attempts = sorted(tuple(cells[:2]) for cells in table_rows_all(every.out))
    assert attempts == [("0", "1"), ("1", "1"), ("1", "2")]


def table_rows_all(text: str) -> list[list[str]]:
    """Every row of the table in ``text`` (``--all`` repeats an index), as cells."""
    return [re.split(r"\s{2,}", line) for line in text.splitlines() if line[:1].isdigit()]


def test_one_run_is_not_one_runs(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", -c, "pass"]}}}}
    """)
    result = cli(str(spec), "--home", str(tmp_path / "home"))
    assert result.code == 0, result.err
    assert "): 1 run, concurrency" in result.err
    assert "1 runs" not in result.err + result.out
    assert "resume:" not in result.err  # it succeeded: nothing to resume
