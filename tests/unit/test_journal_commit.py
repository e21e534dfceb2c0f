"""Journal.commit on asyncio: the writer thread wakes the waiting task itself (no worker
thread waits for it), records queued while a commit runs go in one transaction, and a
cancelled caller still waits for the answer. A real SQLite file; a second connection holding
the write lock keeps the writer from committing for as long as a test needs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from orchestrator.store.journal import Journal

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


@pytest.fixture
def lock(journal: Journal) -> Iterator[sqlite3.Connection]:
    """A connection holding the journal's write lock until the test rolls it back."""
    conn = sqlite3.connect(journal.path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    _release(conn)
    conn.close()


def _release(lock: sqlite3.Connection) -> None:
    """Let the writer commit (also when an assertion failed: the waiters must end)."""
    if lock.in_transaction:
        lock.execute("ROLLBACK")


def _sweep(journal: Journal, sweep_id: str) -> None:
    journal.add_sweep(
        sweep_id,
        name=None,
        description=None,
        tags=[],
        spec_path="spec.yaml",
        kind="single",
        total=1,
        concurrency=1,
        pid=1,
        seed=None,
        daemon_spec=("version: 1.1", "/"),
    )


async def test_a_commit_is_awaited_without_a_worker_thread(
    journal: Journal, lock: sqlite3.Connection
) -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    committed: list[str] = []

    async def commit(sweep_id: str) -> None:
        await journal.commit(sweep_id)
        committed.append(sweep_id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for sweep_id in ("s1", "s2", "s3"):
                _sweep(journal, sweep_id)
                tg.start_soon(commit, sweep_id)
            try:
                await anyio.wait_all_tasks_blocked()
                assert committed == [], "the writer cannot commit while the lock is held"
                assert limiter.borrowed_tokens == 0, "no worker thread waits for the commit"
            finally:
                _release(lock)
    assert sorted(committed) == ["s1", "s2", "s3"]
    assert [row.id for row in journal.latest_sweeps(10)].count("s2") == 1, "readable at once"


async def test_a_cancelled_commit_still_waits_for_its_answer(
    journal: Journal, lock: sqlite3.Connection
) -> None:
    """Somebody may be told "accepted" right after: the wait cannot be cut short."""
    _sweep(journal, "s1")
    returned = anyio.Event()

    async def commit(scope: anyio.CancelScope) -> None:
        with scope:
            await journal.commit("s1")
        returned.set()

    scope = anyio.CancelScope()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(commit, scope)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            try:
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set(), "cancelled, but the commit has not happened yet"
            finally:
                _release(lock)
            await returned.wait()
    assert journal.find_sweep("s1").id == "s1"


async def test_a_flush_is_awaited_without_a_worker_thread(
    journal: Journal, lock: sqlite3.Connection
) -> None:
    """Readers (the API, a log follower at each wake) flush first: no thread per flush."""
    _sweep(journal, "s1")
    flushed = anyio.Event()

    async def flush() -> None:
        await journal.flush()
        flushed.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(flush)
            try:
                await anyio.wait_all_tasks_blocked()
                assert not flushed.is_set()
                limiter = anyio.to_thread.current_default_thread_limiter()
                assert limiter.borrowed_tokens == 0, "no worker thread waits for the flush"
            finally:
                _release(lock)
    assert journal.find_sweep("s1").id == "s1", "what was queued before is read"
