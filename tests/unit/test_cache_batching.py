"""Claims answered in batches (issue 14): the store's writer thread answers every claim one
transaction took, and the event loop is woken once for all of them, not once each; a run that
went away meanwhile still has its claim let go."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from orchestrator_plugins.cache import _Answer, _Mailbox  # type: ignore[import-not-found]

from orchestrator.procinfo import start_time
from orchestrator.store.cache import CacheStore, Claim, Decision

WAIT_S = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the orchestrator runs on asyncio only


class Wakes:
    """Counts the times a mailbox woke ``loop`` (from another thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        real = loop.call_soon_threadsafe

        def spy(callback: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(callback, "__name__", None) == "_empty":
                self.count += 1
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = spy  # type: ignore[method-assign,assignment]


def claim(run_id: str) -> Claim:
    pid = os.getpid()
    return Claim(
        key=f"key-{run_id}",
        run_id=run_id,
        sweep_id="s",
        pid=pid,
        pid_start=start_time(pid),
        claimed_at=0.0,
    )


@pytest.mark.anyio
async def test_answers_that_come_together_wake_the_loop_once() -> None:
    loop = asyncio.get_running_loop()
    wakes, mailbox = Wakes(loop), _Mailbox(loop)
    released: list[str] = []
    futures = [loop.create_future() for _ in range(3)]
    answers = [
        _Answer(mailbox, future, lambda n=n: released.append(f"r{n}"))
        for n, future in enumerate(futures)
    ]
    # Three answers from the writer thread while the loop is busy (blocked here).
    writer = threading.Thread(target=lambda: [answer(True) for answer in answers])
    writer.start()
    writer.join(WAIT_S)
    assert await asyncio.wait_for(asyncio.gather(*futures), WAIT_S) == [True] * 3
    assert wakes.count == 1, "one wake-up carried the three answers"
    # The next answer wakes the loop again (nothing is left waiting for a wake-up).
    late = loop.create_future()
    threading.Thread(target=_Answer(mailbox, late, lambda: None), args=(False,)).start()
    assert await asyncio.wait_for(late, WAIT_S) is False
    assert wakes.count == 2
    assert released == []


@pytest.mark.anyio
async def test_claims_queued_together_are_each_answered(tmp_path: Path) -> None:
    """Each claimant gets its own answer through the loop's mailbox, and one whose run went
    away meanwhile (its future cancelled) lets its claim go."""
    loop = asyncio.get_running_loop()
    store, mailbox = CacheStore(tmp_path), _Mailbox(loop)
    store._db()
    futures = [loop.create_future() for _ in range(3)]
    with store._lock:  # the writer waits: the three claims pile up behind the first
        for n, future in enumerate(futures):
            release = functools.partial(store.release_later, f"key-r{n}", f"r{n}")
            assert store.claim_unanswered_later(claim(f"r{n}"), _Answer(mailbox, future, release))
        futures[2].cancel()  # that run went away before its answer came
    assert await asyncio.wait_for(asyncio.gather(*futures[:2]), WAIT_S) == [True, True]
    # The cancelled one's answer reaches the loop before this flush returns (both go through
    # the loop's queue, in order) and queues its release, written by the next flush.
    await asyncio.to_thread(store.flush)
    await asyncio.to_thread(store.flush)
    rows = store._rows("SELECT run_id FROM claims ORDER BY run_id")
    assert rows == [("r0",), ("r1",)]
    store.close()


@pytest.mark.anyio
async def test_an_answer_that_fails_does_not_keep_the_others_from_their_runs() -> None:
    loop = asyncio.get_running_loop()
    mailbox, errors = _Mailbox(loop), list[BaseException]()
    loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
    try:
        got = loop.create_future()

        def broken(taken: bool) -> None:
            raise RuntimeError("broken")

        writer = threading.Thread(
            target=lambda: [mailbox.post(broken, True), mailbox.post(got.set_result, True)]
        )
        writer.start()
        writer.join(WAIT_S)
        assert await asyncio.wait_for(got, WAIT_S) is True
        assert [str(e) for e in errors] == ["broken"]
    finally:
        loop.set_exception_handler(None)


def test_a_runs_decision_is_written_with_the_entries_not_in_a_transaction_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run records a decision (a miss, mostly): written at once, each cost the writer a
    # transaction, and the file was busy for the next run's claim on the event loop. Nobody
    # waits for one (``decision`` flushes first): they ride with the entries.
    store = CacheStore(tmp_path)
    transactions: list[list[str]] = []
    for name in ("_commit_early", "_commit_late"):
        real = getattr(store, name)

        def spy(writes: list[Any], real: Any = real, name: str = name) -> None:
            transactions.append([name] + [w.decision.run_id for w in writes if w.decision])
            real(writes)

        monkeypatch.setattr(store, name, spy)
    try:
        for n in range(3):
            store.record_later(
                Decision(
                    run_id=f"r{n}",
                    sweep_id="s",
                    key=f"k{n}",
                    decided_at=float(n),
                    verdict="miss",
                    detail="no entry with this key",
                    source_run_id=None,
                    parts={"params:i": n},
                )
            )
        found = store.decision("r2")
        assert found is not None and found.parts == {"params:i": 2}
        assert transactions == [["_commit_late", "r0", "r1", "r2"]]
    finally:
        store.close()
