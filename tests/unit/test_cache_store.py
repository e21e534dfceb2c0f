"""The cache store's claims, decisions and upgrade of an older file, on a real SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.procinfo import is_same_process, start_time
from orchestrator.store import cache as cache_store
from orchestrator.store.cache import CacheEntry, CacheStore, Claim, Decision


def claim(run_id: str, pid: int, key: str = "k", sweep: str = "s") -> Claim:
    return Claim(
        key=key, run_id=run_id, sweep_id=sweep, pid=pid, pid_start=start_time(pid), claimed_at=0.0
    )


def alive(holder: Claim) -> bool:
    return is_same_process(holder.pid, holder.pid_start)


def test_a_live_claimant_holds_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        held = claim("first", child.pid)
        assert store.claim(held, alive) is None
        assert store.claim(claim("second", os.getpid()), alive) == held, "its claimant lives"
        assert store.claim(claim("first", child.pid), alive) is None, "the holder may re-claim"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    assert store.claim(claim("second", os.getpid()), alive) is None, "a dead claimant's claim"
    store.release("k", "first")  # taken over since: left alone
    assert store.claim(claim("third", os.getpid()), lambda h: h.run_id == "second") is not None
    store.release("k", "second")
    assert store.claim(claim("third", os.getpid()), lambda h: True) is None
    store.release_sweep("s", os.getpid())
    assert store.claim(claim("fourth", os.getpid()), lambda h: True) is None
    store.close()


def test_an_unanswered_claim_needs_a_free_key_and_no_entry(tmp_path: Path) -> None:
    """The miss path's one statement: it claims only a key nobody holds that no entry
    answers, whether the entry is in the file (another process's) or queued here."""
    store, other = CacheStore(tmp_path), CacheStore(tmp_path)
    me = os.getpid()
    assert store.claim_unanswered(claim("first", me)), "a free key with no entry"
    assert not store.claim_unanswered(claim("second", me)), "held by first"
    store.release("k", "first")
    other.put(entry("k", "first"))  # another process's entry, committed
    assert not store.claim_unanswered(claim("second", me)), "an entry answers it"
    assert store.claim(claim("second", me), alive) is None, "the slow path still claims"
    store.release("k", "second")
    store.put_later(entry("q", "first"), confirm=lambda: False)  # queued, never written
    assert not store.claim_unanswered(claim("second", me, key="q")), "a queued entry"
    store.flush()
    assert store.claim_unanswered(claim("second", me, key="q")), "dropped: free again"
    store.close()
    other.close()


def entry(key: str, run_id: str) -> CacheEntry:
    return CacheEntry(key=key, run_id=run_id, sweep_id="s", finished_at=0.0)


def test_decisions_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_store, "MAX_DECISIONS", 3)
    store = CacheStore(tmp_path)
    for i in range(5):
        store.record(
            Decision(
                run_id=f"r{i}",
                sweep_id="s",
                key="k",
                decided_at=float(i),
                verdict="miss",
                detail="no entry with this key",
                parts={"params:a": i},
            )
        )
    assert [store.decision(f"r{i}") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    newest = store.decision("r4")
    assert newest is not None and newest.parts == {"params:a": 4}
    store.close()


def test_a_cache_file_from_before_parts_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "entries.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE entries (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT "
            "NULL, finished_at REAL NOT NULL, outputs TEXT NOT NULL, params TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO entries VALUES ('k', 'r', 's', 1.0, '{}', '{\"a\": 1}')")
    conn.close()
    store = CacheStore(tmp_path)
    entry = store.get("k")
    assert entry is not None and entry.params == {"a": 1} and entry.parts == {}
    store.delete("k", run_id="another run")
    assert store.get("k") is not None, "an entry replaced since is not deleted"
    store.delete("k", run_id="r")
    assert store.entries() == []
    store.close()
