"""The cache store's queued writes: seen here at once, by another process once written, the
claim let go with the entry, an unconfirmed entry dropped (issue 14, item 1)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from orchestrator.procinfo import start_time
from orchestrator.store.cache import CacheEntry, CacheStore, Claim, Decision


def entry(run_id: str = "r1", key: str = "k") -> CacheEntry:
    return CacheEntry(key=key, run_id=run_id, sweep_id="s", finished_at=1.0, outputs={"x": 1})


def claim(run_id: str = "r1", key: str = "k") -> Claim:
    pid = os.getpid()
    return Claim(
        key=key, run_id=run_id, sweep_id="s", pid=pid, pid_start=start_time(pid), claimed_at=0.0
    )


def test_a_queued_entry_is_found_here_at_once_and_elsewhere_once_written(tmp_path: Path) -> None:
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    gate = threading.Event()

    def confirm() -> bool:  # the journal's flush, held back: the entry cannot be written yet
        return gate.wait(30)

    store.put_later(entry(), confirm=confirm)
    assert store.get("k") == entry(), "this store answers from its queue"
    assert other.get("k") is None, "not written yet"
    gate.set()
    store.flush()
    assert other.get("k") == entry()
    assert store.get("k") == entry()
    store.close()
    other.close()


def test_the_claim_goes_in_the_same_transaction_as_the_entry(tmp_path: Path) -> None:
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    assert store.claim(claim(), lambda holder: True) is None
    gate = threading.Event()
    store.put_later(entry(), confirm=lambda: gate.wait(30), release=True)
    assert other.claim(claim("r2"), lambda holder: True) is not None, "still held"
    gate.set()
    store.flush()
    assert other.get("k") == entry()
    assert other.claim(claim("r2"), lambda holder: True) is None, "let go with the entry"
    store.close()
    other.close()


def test_an_unconfirmed_entry_is_dropped_but_its_claim_is_let_go(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    assert store.claim(claim(), lambda holder: True) is None
    store.put_later(entry(), confirm=lambda: False, release=True)
    store.flush()
    assert store.get("k") is None
    assert store.claim(claim("r2"), lambda holder: True) is None
    store.close()


def test_queued_decisions_and_releases_are_written_by_close(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    assert store.claim(claim(), lambda holder: True) is None
    decision = Decision(
        run_id="r1", sweep_id="s", key="k", decided_at=1.0, verdict="miss", detail="no entry"
    )
    store.record_later(decision)
    store.release_later("k", "r1")
    store.close()
    reopened = CacheStore(tmp_path)
    assert reopened.decision("r1") == decision
    assert reopened.claim(claim("r2"), lambda holder: True) is None
    reopened.close()
