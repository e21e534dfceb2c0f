"""A pipeline node's trigger over its upstream nodes' states (Polyaxon's six triggers)."""

from __future__ import annotations

import pytest

from orchestrator.engine.triggers import trigger_decision

S, F, X, K, U = "succeeded", "failed", "stopped", "skipped", "upstream_failed"


def decide(trigger: str | None, *states: str | None, skip: bool = False) -> str:
    return trigger_decision(trigger, {f"n{i}": s for i, s in enumerate(states)}, skip)


def test_no_upstream_runs_at_once() -> None:
    assert decide("all_failed") == "run"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((S, S), "run"),
        ((S, None), "wait"),
        ((S, "running"), "wait"),
        ((F, None), "upstream_failed"),  # can no longer hold: decided at once
        ((X, S), "upstream_failed"),
        ((U, S), "upstream_failed"),
        ((K, S), "upstream_failed"),  # skipped is done, not succeeded (Polyaxon)
    ],
)
def test_all_succeeded_is_the_default(states: tuple[str | None, ...], expected: str) -> None:
    assert decide(None, *states) == expected
    assert decide("all_succeeded", *states) == expected


@pytest.mark.parametrize(
    ("trigger", "states", "expected"),
    [
        ("all_failed", (F, F), "run"),
        ("all_failed", (F, None), "wait"),
        ("all_failed", (F, S), "upstream_failed"),
        ("all_failed", (F, U), "upstream_failed"),  # only "failed" counts, as in Polyaxon
        ("all_done", (F, None), "wait"),
        ("all_done", (F, S, X, K, U), "run"),
        ("one_succeeded", (None, S), "run"),
        ("one_succeeded", (F, None), "wait"),  # another may still succeed
        ("one_succeeded", (F, X), "upstream_failed"),
        ("one_failed", (None, F), "run"),
        ("one_failed", (S, None), "wait"),
        ("one_failed", (S, U), "upstream_failed"),
        ("one_done", (None, X), "run"),
        ("one_done", (None, None), "wait"),
    ],
)
def test_the_other_triggers(trigger: str, states: tuple[str | None, ...], expected: str) -> None:
    assert decide(trigger, *states) == expected


def test_skip_on_upstream_skip_wins_over_the_trigger() -> None:
    assert decide("all_done", K, S, skip=True) == "skip"
    assert decide("one_succeeded", S, K, skip=True) == "skip"
    assert decide("all_done", K, S) == "run"
    assert decide("all_done", None, S, skip=True) == "wait"


def test_an_unknown_trigger_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown trigger"):
        decide("sometimes", S)


def test_a_pipeline_ends_as_polyaxons_runs_check_pipeline_says() -> None:
    from orchestrator.engine.dag import dag_ending
    from orchestrator.engine.states import SweepState

    assert dag_ending({"a": S, "b": F, "c": U}) == (SweepState.FAILED, "1 node(s) failed: b")
    # upstream_failed alone does not fail it (its cause is counted where it failed).
    assert dag_ending({"a": S, "b": K, "c": U}) == (SweepState.SUCCEEDED, None)
    assert dag_ending({"a": X, "b": X}) == (SweepState.STOPPED, "every node was stopped")
    assert dag_ending({"a": X, "b": S}) == (SweepState.SUCCEEDED, None)
