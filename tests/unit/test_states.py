"""The run and sweep state tables: every move checked, the table's meaning pinned literally.

The expected moves below are written out by hand, not derived from ``ALLOWED``: changing the
table must be a deliberate change here too.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

import pytest

from orchestrator.engine.states import (
    ALLOWED,
    SWEEP_ALLOWED,
    SWEEP_TERMINAL,
    SWEEP_UNFINISHED,
    TERMINAL,
    UNFINISHED,
    InvalidTransition,
    RunState,
    SweepState,
    check_sweep_transition,
    check_transition,
)

S = TypeVar("S", bound=Enum)

#: Every allowed run move, by value: today's table, copied on purpose.
RUN_MOVES: frozenset[tuple[str, str]] = frozenset(
    {
        ("created", "queued"),
        ("created", "skipped"),
        ("created", "stopped"),
        ("created", "failed"),
        ("created", "upstream_failed"),
        ("queued", "starting"),
        ("queued", "succeeded"),
        ("queued", "skipped"),
        ("queued", "stopped"),
        ("queued", "failed"),
        ("starting", "running"),
        ("starting", "stopping"),
        ("starting", "failed"),
        ("starting", "stopped"),
        ("starting", "retrying"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "stopping"),
        ("running", "stopped"),
        ("running", "retrying"),
        ("stopping", "stopped"),
        ("stopping", "failed"),
        ("stopping", "succeeded"),
        ("retrying", "queued"),
        ("retrying", "stopped"),
        ("retrying", "failed"),
    }
)

#: Every allowed sweep move, by value.
SWEEP_MOVES: frozenset[tuple[str, str]] = frozenset(
    {
        ("created", "running"),
        ("created", "failed"),
        ("created", "stopped"),
        ("running", "stopping"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "stopped"),
        ("stopping", "succeeded"),
        ("stopping", "failed"),
        ("stopping", "stopped"),
        ("succeeded", "running"),
        ("failed", "running"),
        ("stopped", "running"),
        # A pipeline's node that does not run (this time: a resumed pipeline decides anew).
        ("created", "skipped"),
        ("created", "upstream_failed"),
        ("failed", "skipped"),
        ("failed", "upstream_failed"),
        ("stopped", "skipped"),
        ("stopped", "upstream_failed"),
        ("skipped", "running"),
        ("skipped", "upstream_failed"),
        ("upstream_failed", "running"),
        ("upstream_failed", "skipped"),
    }
)

RUN_VALUES = {
    "created",
    "queued",
    "starting",
    "running",
    "stopping",
    "retrying",
    "succeeded",
    "failed",
    "stopped",
    "skipped",
    "upstream_failed",
}
SWEEP_VALUES = {
    "created",
    "running",
    "stopping",
    "succeeded",
    "failed",
    "stopped",
    "skipped",
    "upstream_failed",
}


def moves(table: Mapping[S, frozenset[S]]) -> set[tuple[str, str]]:
    return {(a.value, b.value) for a, nexts in table.items() for b in nexts}


def reachable(table: Mapping[S, frozenset[S]], start: S) -> set[S]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in table[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- run states -------------------------------------------------------------------------------


def test_run_state_values_are_exactly_the_documented_ones() -> None:
    assert {s.value for s in RunState} == RUN_VALUES
    assert len(RunState) == len(RUN_VALUES)


def test_the_run_table_has_a_row_for_every_state() -> None:
    assert set(ALLOWED) == set(RunState)


def test_the_run_table_allows_exactly_the_listed_moves() -> None:
    assert moves(ALLOWED) == RUN_MOVES


@pytest.mark.parametrize(
    ("current", "to"), list(itertools.product(RunState, RunState)), ids=lambda s: s.value
)
def test_check_transition_for_every_pair(current: RunState, to: RunState) -> None:
    allowed = (current.value, to.value) in RUN_MOVES
    assert allowed == (to in ALLOWED[current])
    if allowed:
        check_transition(current, to)  # a listed move must pass
    else:
        with pytest.raises(InvalidTransition, match=f"run cannot go from {current} to {to}$"):
            check_transition(current, to)


def test_no_run_state_may_move_to_itself() -> None:
    for state in RunState:
        with pytest.raises(InvalidTransition):
            check_transition(state, state)


def test_terminal_and_unfinished_run_states() -> None:
    assert {s.value for s in TERMINAL} == {
        "succeeded",
        "failed",
        "stopped",
        "skipped",
        "upstream_failed",
    }
    assert {s.value for s in UNFINISHED} == {
        "created",
        "queued",
        "starting",
        "running",
        "stopping",
        "retrying",
    }
    assert TERMINAL.isdisjoint(UNFINISHED)
    assert set(RunState) == TERMINAL | UNFINISHED


def test_terminal_run_states_have_no_way_out() -> None:
    for state in TERMINAL:
        assert ALLOWED[state] == frozenset()
        for to in RunState:
            with pytest.raises(InvalidTransition):
                check_transition(state, to)


def test_every_run_state_is_reachable_from_created() -> None:
    assert reachable(ALLOWED, RunState.CREATED) == set(RunState)


@pytest.mark.parametrize("state", sorted(UNFINISHED, key=str), ids=str)
def test_every_unfinished_run_state_can_reach_a_terminal_one(state: RunState) -> None:
    assert reachable(ALLOWED, state) & TERMINAL


def test_every_unfinished_run_state_can_fail_or_stop_at_once() -> None:
    """Recovery fails unfinished runs and a stop ends them: a direct move must exist."""
    for state in UNFINISHED:
        if state is RunState.STOPPING:
            assert {RunState.FAILED, RunState.STOPPED} <= ALLOWED[state]
        else:
            assert RunState.FAILED in ALLOWED[state], state
            assert RunState.STOPPED in ALLOWED[state], state


# --- sweep states -----------------------------------------------------------------------------


def test_sweep_state_values_are_exactly_the_documented_ones() -> None:
    assert {s.value for s in SweepState} == SWEEP_VALUES
    assert len(SweepState) == len(SWEEP_VALUES)


def test_the_sweep_table_has_a_row_for_every_state() -> None:
    assert set(SWEEP_ALLOWED) == set(SweepState)


def test_the_sweep_table_allows_exactly_the_listed_moves() -> None:
    assert moves(SWEEP_ALLOWED) == SWEEP_MOVES


@pytest.mark.parametrize(
    ("current", "to"), list(itertools.product(SweepState, SweepState)), ids=lambda s: s.value
)
def test_check_sweep_transition_for_every_pair(current: SweepState, to: SweepState) -> None:
    allowed = (current.value, to.value) in SWEEP_MOVES
    assert allowed == (to in SWEEP_ALLOWED[current])
    if allowed:
        check_sweep_transition(current, to)  # a listed move must pass
    else:
        with pytest.raises(InvalidTransition, match=f"sweep cannot go from {current} to {to}$"):
            check_sweep_transition(current, to)


def test_terminal_and_unfinished_sweep_states() -> None:
    finished = {"succeeded", "failed", "stopped", "skipped", "upstream_failed"}
    assert {s.value for s in SWEEP_TERMINAL} == finished
    assert {s.value for s in SWEEP_UNFINISHED} == {"created", "running", "stopping"}
    assert SWEEP_TERMINAL.isdisjoint(SWEEP_UNFINISHED)


def test_a_finished_sweep_can_only_be_resumed_or_left_unrun() -> None:
    unrun = {SweepState.SKIPPED, SweepState.UPSTREAM_FAILED}
    for state in SWEEP_TERMINAL:
        assert SweepState.RUNNING in SWEEP_ALLOWED[state]
        assert SWEEP_ALLOWED[state] <= {SweepState.RUNNING, *unrun}


def test_every_sweep_state_is_reachable_from_created() -> None:
    assert reachable(SWEEP_ALLOWED, SweepState.CREATED) == set(SweepState)


@pytest.mark.parametrize("state", sorted(SWEEP_UNFINISHED, key=str), ids=str)
def test_every_unfinished_sweep_state_can_finish(state: SweepState) -> None:
    assert reachable(SWEEP_ALLOWED, state) & SWEEP_TERMINAL


# --- the enums are strings --------------------------------------------------------------------


@pytest.mark.parametrize("state", [*RunState, *SweepState], ids=lambda s: f"{type(s).__name__}.{s}")
def test_states_are_strings_whose_str_is_the_value(state: RunState | SweepState) -> None:
    assert isinstance(state, str)
    assert str(state) == state.value
    assert f"{state}" == state.value
    assert state == state.value
    assert type(state)(state.value) is state


def test_the_invalid_transition_error_is_a_runtime_error() -> None:
    assert issubclass(InvalidTransition, RuntimeError)
