"""Claims taken by the cache store's writer thread (issue 14): a claimant is answered only
once its claim (and the miss it decides) is in the file, for another process to see; an
entry waiting for the journal never holds a claim up; a claimant that went away meanwhile
does not keep the key."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from orchestrator_plugins.cache import RunCache  # type: ignore[import-not-found]

from orchestrator.plugin import RunState
from orchestrator.procinfo import start_time
from orchestrator.store.cache import CacheEntry, CacheStore, Claim, Decision

WAIT_S = 30.0


def claim(run_id: str, key: str = "k") -> Claim:
    pid = os.getpid()
    return Claim(
        key=key, run_id=run_id, sweep_id="s", pid=pid, pid_start=start_time(pid), claimed_at=0.0
    )


def miss(run_id: str, key: str = "k") -> Decision:
    return Decision(
        run_id=run_id, sweep_id="s", key=key, decided_at=1.0, verdict="miss", detail="no entry"
    )


class Answers:
    """What the writer thread answered, and what another process saw at that moment."""

    def __init__(self, other: CacheStore) -> None:
        self.other = other
        self.got: dict[str, tuple[bool, bool, Decision | None]] = {}
        self.done = threading.Condition()

    def __call__(self, run_id: str) -> Any:
        def answer(taken: bool) -> None:
            held = self.other.claim(claim("someone else"), lambda holder: True) is not None
            seen = (taken, held, self.other.decision(run_id))
            with self.done:
                self.got[run_id] = seen
                self.done.notify_all()

        return answer

    def of(self, run_id: str) -> tuple[bool, bool, Decision | None]:
        with self.done:
            assert self.done.wait_for(lambda: run_id in self.got, WAIT_S), "no answer"
            return self.got[run_id]


def test_a_queued_claim_is_answered_once_it_and_its_miss_are_in_the_file(tmp_path: Path) -> None:
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    answers = Answers(other)
    assert store.claim_unanswered_later(claim("r1"), answers("r1"), decision=miss("r1"))
    assert answers.of("r1") == (True, True, miss("r1")), "held, and recorded, when answered"
    assert store.claim_unanswered_later(claim("r2"), answers("r2"), decision=miss("r2"))
    taken, _, decision = answers.of("r2")
    assert (taken, decision) == (False, None), "held by r1: no claim, no miss recorded"
    store.close()
    other.close()


def test_a_key_an_entry_queued_here_answers_is_not_queued(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    gate = threading.Event()
    entry = CacheEntry(key="k", run_id="r1", sweep_id="s", finished_at=0.0)
    store.put_later(entry, confirm=lambda: gate.wait(WAIT_S))

    def never(taken: bool) -> None:
        raise AssertionError("nothing was queued")

    assert not store.claim_unanswered_later(claim("r2"), never)
    gate.set()
    store.close()


def test_an_entry_waiting_for_the_journal_never_holds_up_a_claim(tmp_path: Path) -> None:
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    gate = threading.Event()
    entry = CacheEntry(key="done", run_id="r0", sweep_id="s", finished_at=0.0)
    store.put_later(entry, confirm=lambda: gate.wait(WAIT_S))
    answers = Answers(other)
    assert store.claim_unanswered_later(claim("r1"), answers("r1"))
    assert answers.of("r1")[:2] == (True, True), "answered while the journal still holds back"
    assert other.get("done") is None
    gate.set()
    store.flush()
    assert other.get("done") == entry, "a flush writes what lingers"
    store.close()
    other.close()


def test_lingering_entries_are_written_unasked(tmp_path: Path) -> None:
    """Entries wait on the writer for others to share their journal flush, then are
    written by it on its own: no flush needs to ask."""
    store = CacheStore(tmp_path)
    confirmed = threading.Event()

    def confirm() -> bool:
        confirmed.set()
        return True

    for n in range(3):
        entry = CacheEntry(key=f"k{n}", run_id=f"r{n}", sweep_id="s", finished_at=float(n))
        store.put_later(entry, confirm=confirm)
    assert confirmed.wait(WAIT_S), "taken up without a flush"
    store.flush()
    assert [e.key for e in store.entries()] == ["k0", "k1", "k2"]
    store.close()


def test_a_failed_transaction_answers_no(tmp_path: Path) -> None:
    """The claimant is never left waiting: a write that fails is a ``False`` (it then
    decides on the loop, where the error shows)."""
    store = CacheStore(tmp_path)
    store._db().execute("DROP TABLE claims")
    got: list[bool] = []
    done = threading.Event()

    def answer(taken: bool) -> None:
        got.append(taken)
        done.set()

    assert store.claim_unanswered_later(claim("r1"), answer)
    assert done.wait(WAIT_S)
    assert got == [False]
    store.close()


def fake_sweep(home: Path) -> tuple[Any, Any]:
    """A context and a run, as much of them as the cache plugin reads."""
    ns = types.SimpleNamespace
    memos: dict[int, Any] = {}

    def per_sweep(owner: object, factory: Any) -> Any:
        return memos.setdefault(id(owner), factory())

    spec = ns(
        operation=ns(cache=None, matrix=object()),
        component=ns(cache=None),
        source="s.yaml",
        component_source="s.yaml",
        base_dir=home,
    )
    plan = ns(
        ios=[],
        component_hash="c",
        spec=ns(base_dir=home, component=ns(run=ns(connections=None))),
    )
    ctx = ns(spec=spec, plan=plan, home=home, sweep_id="s", per_sweep=per_sweep)
    run_spec = ns(params={"a": 1}, argv=["x"], env={}, working_dir=None, init=[])
    run = ns(id=uuid.uuid4().hex, index=0, spec=run_spec, state=RunState.RUNNING, reason=None)
    return ctx, run


@pytest.mark.anyio
async def test_a_claimant_cancelled_while_waiting_lets_the_claim_go(tmp_path: Path) -> None:
    """The claim commits after its run went away (the sweep stopped): it is let go again,
    and a run of another sweep here is not told to wait for it."""
    cache, (ctx, run) = RunCache(), fake_sweep(tmp_path)
    store = cache.store(tmp_path)
    store._db()
    queued = asyncio.Event()
    claim_later = store.claim_unanswered_later

    def spy(*args: Any, **kwargs: Any) -> bool:
        queued.set()
        return bool(claim_later(*args, **kwargs))

    store.claim_unanswered_later = spy
    blocker = busy(store)  # the claim cannot be taken at once: it is queued
    with store._lock:  # the writer cannot commit yet
        task = asyncio.ensure_future(cache.decide_before_run(run=run, ctx=ctx))
        await asyncio.wait_for(queued.wait(), WAIT_S)
        assert cache._inflight, "a twin here waits for it meanwhile"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not cache._inflight, "no twin waits for a run that went away"
        blocker.execute("ROLLBACK")
    # The claim commits; its answer reaches the loop (before this flush returns: both go
    # through the loop's queue in order) and queues the release, written by the next flush.
    await asyncio.to_thread(store.flush)
    await asyncio.to_thread(store.flush)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT run_id FROM claims").fetchall() == []
    store.close()


def busy(store: CacheStore) -> sqlite3.Connection:
    """Another connection holding the file's write lock (as another orchestrator writing)."""
    store._db()
    blocker = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def test_a_claim_is_taken_at_once_when_nobody_writes_and_never_waits_when_one_does(
    tmp_path: Path,
) -> None:
    """On the caller's thread, visible to another process as it returns; a key someone
    holds or an entry answers is not taken; a busy file is a None at once (the caller queues
    the claim), never a wait for the lock."""
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    assert store.claim_unanswered_now(claim("r1")) is True
    assert other.claim(claim("someone else"), lambda holder: True) is not None, "seen at once"
    assert store.claim_unanswered_now(claim("r2")) is False, "held by r1"
    other.put(CacheEntry(key="answered", run_id="r0", sweep_id="s", finished_at=0.0))
    assert store.claim_unanswered_now(claim("r3", key="answered")) is False
    blocker = busy(store)
    assert store.claim_unanswered_now(claim("r4", key="free")) is None
    blocker.execute("ROLLBACK")
    assert store.claim_unanswered_now(claim("r4", key="free")) is True
    blocker.close()
    store.close()
    other.close()


@pytest.mark.anyio
async def test_a_free_key_is_claimed_without_waiting_for_the_writer_thread(
    tmp_path: Path,
) -> None:
    """The common miss: the run goes on while the writer thread is busy (it would have
    waited for the writer's transaction and the answer's trip back); the miss is recorded
    later, and another process sees the claim at once."""
    cache, (ctx, run) = RunCache(), fake_sweep(tmp_path)
    store = cache.store(tmp_path)
    store._db()
    with store._lock:  # the writer thread cannot commit anything meanwhile
        decided = await asyncio.wait_for(cache.decide_before_run(run=run, ctx=ctx), WAIT_S)
        assert decided is None, "a miss: the run executes"
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT run_id FROM claims").fetchall() == [(run.id,)]
    await asyncio.to_thread(store.flush)
    recorded = store.decision(run.id)
    assert recorded is not None and recorded.verdict == "miss"
    store.close()


@pytest.mark.anyio
async def test_a_claim_on_a_busy_file_is_queued_and_taken_when_it_is_free(
    tmp_path: Path,
) -> None:
    cache, (ctx, run) = RunCache(), fake_sweep(tmp_path)
    store = cache.store(tmp_path)
    blocker = busy(store)
    task = asyncio.ensure_future(cache.decide_before_run(run=run, ctx=ctx))
    await asyncio.sleep(0)
    assert not task.done(), "waits for the queued claim"
    blocker.execute("ROLLBACK")
    assert await asyncio.wait_for(task, WAIT_S) is None
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT run_id FROM claims").fetchall() == [(run.id,)]
    blocker.close()
    store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
