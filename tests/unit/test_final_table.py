"""The final table's pieces: short state texts, the optimised metric, the resume hint."""

from __future__ import annotations

import pytest

from orchestrator.reporting import Objective, objective_of, resume_hint, rows_table, short_reason
from orchestrator.spec import models as m


@pytest.mark.parametrize(
    ("reason", "short"),
    [
        ("exit code 2", "exit code 2"),
        ("interrupted (SIGINT)", "interrupted (SIGINT)"),
        ("early stopping: run 3 reported accuracy = 0.908 (>= 0.9) at step 5", "early stop"),
        ("early_stopped: median on loss at step 4: best 0.5 is worse", "early stop"),
        ("the time budget of 60s is spent", "time budget spent"),
        ("disk_full: No space left on device (/x/y)", "disk_full"),
        ("the daemon is shutting down right now", "the daemon is shutting…"),
        ("averyveryveryverylongsingleword_without_spaces", "averyveryveryverylongsi…"),
    ],
)
def test_short_reason_keeps_whole_words(reason: str, short: str) -> None:
    assert short_reason(reason) == short
    assert len(short) <= 24


def row(index: int, state: str, reason: str | None, **outputs: float) -> dict[str, object]:
    return {
        "index": index,
        "state": state,
        "reason": reason,
        "duration_s": 1.0,
        "outputs": outputs,
        "metrics": {},
        "params": {"lr": 0.1 * (index + 1), "epochs": 5},
    }


def test_table_minimize_best_and_one_note_per_reason() -> None:
    rows = [
        row(0, "failed", "os_error: No such file or directory (train.py)"),
        row(1, "succeeded", None, loss=0.5),
        row(2, "succeeded", None, loss=0.25),
        row(3, "failed", "os_error: No such file or directory (train.py)"),
    ]
    text = rows_table(rows, total=4, objective=Objective("loss", "minimize"))
    assert text.count("No such file") == 1
    assert "\nos_error (#0 #3): os_error: No such file or directory (train.py)" in text
    assert "\nbest run by loss (minimize): #2 loss=0.25 (lr=0.3)" in text
    assert "same in every run: epochs=5" in text
    assert "not started" not in text


def test_objective_from_early_stopping_else_the_matrix_metric() -> None:
    rule = m.MetricEarlyStopping(metric="acc", value=0.9, optimization="maximize")
    grid = m.Grid(params={}, early_stopping=[m.FailureEarlyStopping(percent=0.5), rule])
    assert objective_of(grid) == Objective("acc", "maximize")
    assert objective_of(m.Grid(params={})) is None
    assert objective_of(None) is None


def test_resume_hint_only_for_stopped_or_failed() -> None:
    assert resume_hint("a" * 32, "succeeded", None) == []
    (stopped,) = resume_hint("a" * 32, "stopped", None)
    assert stopped.startswith("resume: ") and stopped.endswith(" resume aaaaaaaaaaaa")
    failed = resume_hint("b" * 32, "failed", "/tmp/my home")
    assert failed[1].endswith(" rerun bbbbbbbbbbbb --failed --home '/tmp/my home'")
