"""How runs and sweeps end, decided without processes (``orchestrator.engine.outcome``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from orchestrator.engine.outcome import (
    Move,
    count_states,
    exit_reason,
    retry_reason,
    run_ending,
    sweep_ending,
    sweep_ending_counted,
)
from orchestrator.engine.states import RunState, SweepState, check_transition
from orchestrator.executors.base import Outcome

R, W = RunState, SweepState


def _ending(outcome: Outcome, state: RunState = R.RUNNING, **kw: Any) -> list[Move]:
    args: dict[str, Any] = {"timed_out": False, "timeout": None, "stop_reason": None}
    return run_ending(outcome, state=state, **(args | kw))


@pytest.mark.parametrize(
    ("outcome", "kw", "expected"),
    [
        (Outcome(0), {}, [Move(R.SUCCEEDED, None, 0)]),
        (Outcome(3), {"stderr_tail": ["boom"]}, [Move(R.FAILED, "exit code 3", 3, ["boom"])]),
        (Outcome(-9), {}, [Move(R.FAILED, "killed by SIGKILL", -9, None)]),
        (Outcome(-99), {}, [Move(R.FAILED, "killed by signal 99", -99, None)]),
        (
            Outcome(None, error="no such command: trian"),
            {"stderr_tail": ["x"]},
            [Move(R.FAILED, "no such command: trian", None, ["x"])],
        ),
        (
            Outcome(-15, stopped=True),
            {"stop_reason": "early_stopped"},
            [Move(R.STOPPING, "early_stopped"), Move(R.STOPPED, "early_stopped", -15)],
        ),
        (
            Outcome(-9, stopped=True),
            {"timed_out": True, "timeout": 2.5},
            [
                Move(R.STOPPING, "timeout"),
                Move(R.FAILED, "timeout", -9, ["(stopped after termination.timeout = 2.5s)"]),
            ],
        ),
    ],
)
def test_run_ending(outcome: Outcome, kw: dict[str, Any], expected: list[Move]) -> None:
    moves = _ending(outcome, **kw)
    assert moves == expected
    state = R.RUNNING
    for move in moves:  # every sequence is one the table allows
        check_transition(state, move.to)
        state = move.to


def test_a_run_stopped_before_it_ran_skips_stopping() -> None:
    moves = _ending(Outcome(None, stopped=True), R.STARTING, stop_reason="interrupted")
    assert moves == [Move(R.STOPPED, "interrupted", None)]


@pytest.mark.parametrize(
    ("outcome", "attempt", "max_retries", "timed_out", "stopping", "expected"),
    [
        (Outcome(1), 1, 2, False, False, "exit code 1; retry 1 of 2"),
        (Outcome(1), 2, 2, False, False, "exit code 1; retry 2 of 2"),
        (Outcome(1), 3, 2, False, False, None),
        (Outcome(None, error="cannot start"), 1, 1, False, False, "cannot start; retry 1 of 1"),
        (Outcome(0), 1, 3, False, False, None),
        (Outcome(1), 1, 0, False, False, None),
        (Outcome(-15, stopped=True), 1, 3, False, False, None),
        (Outcome(-9, stopped=True), 1, 3, True, False, None),
        (Outcome(1), 1, 3, False, True, None),
    ],
)
def test_retry_reason(
    outcome: Outcome,
    attempt: int,
    max_retries: int,
    timed_out: bool,
    stopping: bool,
    expected: str | None,
) -> None:
    got = retry_reason(
        outcome, attempt=attempt, max_retries=max_retries, timed_out=timed_out, stopping=stopping
    )
    assert got == expected


@pytest.mark.parametrize(
    ("states", "stop", "feed_error", "expected"),
    [
        ([R.SUCCEEDED, R.SUCCEEDED], None, None, (W.SUCCEEDED, None)),
        ([R.SUCCEEDED, R.FAILED, R.FAILED], None, None, (W.FAILED, "2 of 3 runs failed")),
        ([R.STOPPED, R.STOPPED], None, None, (W.STOPPED, "all runs were stopped")),
        ([R.SUCCEEDED, R.STOPPED], None, None, (W.SUCCEEDED, None)),
        ([R.SUCCEEDED, R.SKIPPED], None, None, (W.SUCCEEDED, None)),
        ([], None, None, (W.SUCCEEDED, None)),
        ([], None, "matrix.values[3]: bad", (W.FAILED, "matrix.values[3]: bad")),
        ([R.SUCCEEDED], None, "matrix.values[3]: bad", (W.FAILED, "matrix.values[3]: bad")),
        ([R.FAILED], None, "bad", (W.FAILED, "1 of 1 runs failed")),
        ([R.FAILED], W.SUCCEEDED, None, (W.SUCCEEDED, "target reached")),
        ([R.SUCCEEDED], W.STOPPED, None, (W.STOPPED, "target reached")),
    ],
)
def test_sweep_ending(
    states: list[RunState],
    stop: SweepState | None,
    feed_error: str | None,
    expected: tuple[SweepState, str | None],
) -> None:
    reason = "target reached" if stop is not None else None
    assert sweep_ending(states, stop=stop, stop_reason=reason, feed_error=feed_error) == expected


def test_count_states_keys_are_plain_values() -> None:
    counts = count_states([R.FAILED, R.SUCCEEDED, R.FAILED])
    assert counts == {"failed": 2, "succeeded": 1}
    assert all(type(key) is str for key in counts)


def test_exit_reason() -> None:
    assert (exit_reason(0), exit_reason(2), exit_reason(-15)) == (
        "exit code 0",
        "exit code 2",
        "killed by SIGTERM",
    )


def test_failure_reason_names_the_kind_first() -> None:
    import errno

    from orchestrator.engine.outcome import failure_reason

    full = OSError(errno.ENOSPC, "No space left on device", "/h/runs/r/stdout.log")
    assert failure_reason(full) == "disk_full: No space left on device (/h/runs/r/stdout.log)"
    assert failure_reason(ExceptionGroup("x", [full])).startswith("disk_full: ")
    assert failure_reason(ValueError("embedded null byte")) == (
        "invalid_argument: embedded null byte"
    )
    assert (
        failure_reason(OSError(errno.EIO, "Input/output error")) == "os_error: Input/output error"
    )
    assert failure_reason(KeyError("k")) == "internal_error: KeyError: 'k'"


def test_configurations_left_unrun_by_a_partial_rerun_keep_the_sweep_from_succeeding() -> None:
    done = Counter({RunState.SUCCEEDED: 2})
    assert sweep_ending_counted(done, stop=None, stop_reason=None, feed_error=None, unrun=3) == (
        SweepState.STOPPED,
        "3 of 5 configurations never ran (resume runs them)",
    )
    assert sweep_ending_counted(done, stop=None, stop_reason=None, feed_error=None) == (
        SweepState.SUCCEEDED,
        None,
    )
    failed = Counter({RunState.SUCCEEDED: 1, RunState.FAILED: 1})
    state, _ = sweep_ending_counted(failed, stop=None, stop_reason=None, feed_error=None, unrun=3)
    assert state is SweepState.FAILED  # a failure says more than what is left to run
