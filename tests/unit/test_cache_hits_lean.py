"""Cache hits cost a lookup, not the journal writer's transactions or a claim that fails
(issue 14: a sweep run again, where most runs are hits, is a hot path too)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from orchestrator_plugins import cache as cache_plugin  # type: ignore[import-not-found]

from orchestrator.engine.output import adopt_cached
from orchestrator.engine.records import RunRecord, SweepResult
from orchestrator.engine.states import SweepState
from orchestrator.engine.transitions import final_state_of
from orchestrator.hooks import UseCached
from orchestrator.store.cache import CacheStore
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout
from orchestrator.testing import FakeRun, run_fake_sweep

GRID = """
version: 1.1
kind: operation
matrix:
  kind: grid
  params: {i: {kind: range, value: "0:12:1"}}
component:
  inputs: [{name: i, type: int}]
  run: {kind: job, container: {command: [train, "{{ i }}"]}}
"""


def ok(job: Any) -> FakeRun:
    return FakeRun(lines=[f'{{"metrics": {{"loss": {job.index}}}, "step": 1}}'])


def run_sweep(spec: Path, home: Path, plugin: object) -> SweepResult:
    result, _ = run_fake_sweep(spec, ok, plugins=[plugin], home=home)
    return result


@pytest.fixture
def held_writer() -> Iterator[Callable[[Journal], threading.Event]]:
    """Hold a journal's writer thread before its next transaction until the returned event is
    set (set at the end of the test in any case)."""
    releases: list[threading.Event] = []

    def hold(journal: Journal) -> threading.Event:
        release = threading.Event()
        releases.append(release)
        original = journal._transaction

        def held(records: Any) -> None:
            release.wait(30)
            original(records)

        journal._transaction = held  # type: ignore[method-assign]
        return release

    yield hold
    for release in releases:
        release.set()


def test_a_hit_on_a_committed_run_waits_for_no_transaction(
    write: Callable[..., Path], tmp_path: Path, held_writer: Callable[[Journal], threading.Event]
) -> None:
    """The earlier run's end and metrics are committed: adopting it reads them while the
    writer is held (the old code flushed the journal twice per hit and waited)."""
    spec = write(GRID)
    first = run_sweep(spec, tmp_path, cache_plugin.RunCache())
    assert first.state is SweepState.SUCCEEDED
    source = first.runs[3]
    with closing(Journal(tmp_path / "journal.sqlite")) as journal:
        target = RunRecord(id="f" * 32, index=3, spec=source.spec)
        journal.add_run(target.id, first.sweep_id, 3, "", "{}", "[]", "", "")
        release = held_writer(journal)  # the run's creation now waits in the queue

        async def adopt() -> None:
            with anyio.fail_after(20):
                await adopt_cached(target, UseCached(source.id, {"x": 1}), journal, tmp_path)

        try:
            anyio.run(adopt)
        finally:
            release.set()
        journal.flush_sync()
        assert target.metrics == {"loss": 3.0}
        assert target.outputs == {"x": 1}
        assert target.cached_from == source.id
        assert journal.last_metrics([target.id]) == {target.id: {"loss": 3.0}}
    layout = RunLayout(tmp_path, target.id)
    assert layout.outputs.is_dir()
    assert not layout.stdout.exists() and not layout.stderr.exists()  # the source had none


def test_a_state_still_on_its_way_is_written_before_it_is_read(tmp_path: Path) -> None:
    with closing(Journal(tmp_path / "journal.sqlite")) as journal:
        journal.add_run("r" * 32, "s" * 12, 0, "", "{}", "[]", "", "")
        journal.flush_sync()
        journal.record_transition("s" * 12, "r" * 32, "created", "queued", None, None, 1)
        assert journal.run_state("r" * 32) == "created"  # committed: not yet
        assert anyio.run(final_state_of, journal, "r" * 32) == "queued"
        assert anyio.run(final_state_of, journal, "n" * 32) is None


def test_a_sweep_run_again_looks_for_entries_before_it_claims(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a run of the sweep was a hit, the next looks first: no claim is written only to
    find the entry (the old code claimed for all 12 runs, each claim a write that failed)."""
    spec = write(GRID)
    assert run_sweep(spec, tmp_path, cache_plugin.RunCache()).state is SweepState.SUCCEEDED
    claims: list[str] = []
    claim_now = CacheStore.claim_unanswered_now

    def counted(store: CacheStore, claim: Any) -> bool | None:
        claims.append(claim.run_id)
        return claim_now(store, claim)

    monkeypatch.setattr(CacheStore, "claim_unanswered_now", counted)
    again = run_sweep(spec, tmp_path, cache_plugin.RunCache())
    assert again.state is SweepState.SUCCEEDED
    assert [r.cached_from is not None for r in again.runs] == [True] * 12
    assert len(claims) <= 4  # at most the runs that decided before the first hit was known
