"""The run cache's records on disk, shared by the cache plugin and ``orchestrator cache``.

One small SQLite file (WAL) under ``HOME/cache/``: a lookup is an indexed read and a store one
insert, a few microseconds each, and concurrent orchestrators on one home folder see whole
records or none. Three tables:

* ``entries``: one per key, the succeeded run that answers it, with the key's parts;
* ``decisions``: what the cache decided for each run (hit, miss and why, off), with the key's
  parts, so ``cache explain`` can say why a run missed; only the newest
  :data:`MAX_DECISIONS` are kept;
* ``claims``: the keys of runs in flight, with the claimant's pid and start time, so a second
  orchestrator on the same home waits for an identical run instead of running it again (a
  dead claimant's claim is taken over).

What a sweep writes per run can be queued (``*_later``): one writer thread commits whatever
has piled up, off the event loop, so the loop never waits for a lock or for SQLite. A run's
claim is tried first where it is asked for (:meth:`CacheStore.claim_unanswered_now`: one
small transaction on a connection that never waits for a lock and never checkpoints), and
queued only when the file is busy: the run then starts without a trip through the writer
thread. A queued
claim (:meth:`CacheStore.claim_unanswered_later`) is answered only once its transaction has
committed (another process sees it before the run starts); claims, decisions and plain
releases go first, in one transaction, and the entries (each waiting for its ``confirm``: the
journal's flush) after, in a second one, so a claim never waits for the journal. Until an
entry is written this store answers from it itself, so a lookup here sees it at once; another
process sees it when it commits (and waits on the claim, let go in the same transaction as the
entry, meanwhile). :meth:`CacheStore.flush` and :meth:`CacheStore.close` wait for the queue.

The key itself is computed by the cache plugin; this module only stores and lists records
(``orchestrator.views`` and ``orchestrator.cache_explain`` print them).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

__all__ = ["LINGER_S", "MAX_DECISIONS", "CacheEntry", "CacheStore", "Claim", "Decision"]

#: Decisions kept (the newest); older ones are dropped as new ones come.
MAX_DECISIONS = 10_000
#: Seconds an entry (or a sweep's release) may wait on the writer thread for others to
#: share its journal flush and transaction. Another orchestrator waiting on its claim sees
#: it this much later at most; this process sees it at once.
LINGER_S = 0.05

_TABLES = (
    """CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT NULL, finished_at REAL NOT NULL,
    outputs TEXT NOT NULL, params TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, key TEXT, decided_at REAL NOT NULL,
    verdict TEXT NOT NULL, detail TEXT NOT NULL, source_run_id TEXT, parts TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start INTEGER, claimed_at REAL NOT NULL
)""",
)
_ENTRY_COLUMNS = "key, run_id, sweep_id, finished_at, outputs, params, parts"
_DECISION_COLUMNS = "run_id, sweep_id, key, decided_at, verdict, detail, source_run_id, parts"


class CacheEntry(msgspec.Struct, kw_only=True):
    key: str
    run_id: str
    sweep_id: str
    finished_at: float
    outputs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    #: The key's parts (``{"params:lr": 0.1, "code:tree": "…"}``); empty for old entries.
    parts: dict[str, Any] = {}


class Decision(msgspec.Struct, kw_only=True):
    """What the cache decided for one run."""

    run_id: str
    sweep_id: str
    #: None when the cache was off for the run (no key was computed).
    key: str | None
    decided_at: float
    #: ``hit``, ``miss`` or ``off``.
    verdict: str
    #: Why, in words (``no entry``, ``entry expired``...).
    detail: str
    source_run_id: str | None = None
    parts: dict[str, Any] = {}


class Claim(msgspec.Struct, kw_only=True):
    """A run in flight under ``key``, in the process ``pid`` (started at ``pid_start``)."""

    key: str
    run_id: str
    sweep_id: str
    pid: int
    pid_start: int | None
    claimed_at: float


class _Later(NamedTuple):
    """One queued write (see :meth:`CacheStore.put_later` and the others)."""

    entry: CacheEntry | None = None
    #: Called on the writer thread before ``entry`` is written; False drops the entry.
    confirm: Callable[[], bool] | None = None
    decision: Decision | None = None
    #: A claim to let go: (key, run_id).
    release: tuple[str, str] | None = None
    #: Every claim of (sweep_id, pid) to let go.
    release_sweep: tuple[str, int] | None = None
    #: A claim to take if its key is free and unanswered: the parameters of
    #: :data:`_CLAIM_UNANSWERED`, and who to tell whether it was taken, once committed.
    claim: tuple[Any, ...] | None = None
    answer: Callable[[bool], None] | None = None
    #: Recorded with the claim, in its transaction, when it is taken.
    decision_if_taken: Decision | None = None


class _Flush(NamedTuple):
    done: threading.Event


_STOP = object()
#: Wakes the writer for the first of a batch of late writes.
_WAKE = object()


class CacheStore:
    """The records of one home folder (one connection per store, usable from any thread)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "cache" / "entries.sqlite"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        #: Entries queued and not yet committed, by key (answered by :meth:`get`).
        self._pending: dict[str, CacheEntry] = {}
        self._pending_lock = threading.Lock()
        #: Entries and sweep releases not yet taken by the writer (the same lock): written
        #: after the rest, in a transaction of their own (an entry waits for its ``confirm``;
        #: a sweep's claims are let go after its entries, never with a gap between).
        self._late: list[_Later] = []
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        #: The connection of :meth:`claim_unanswered_now` (never waits, never checkpoints).
        self._quick: sqlite3.Connection | None = None
        self._quick_lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for table in _TABLES:
                conn.execute(table)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
            if "parts" not in columns:  # a cache written before the key's parts were kept
                conn.execute("ALTER TABLE entries ADD COLUMN parts TEXT")
            self._conn = conn
        return self._conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read on a connection of its own: a WAL reader never waits for the writer thread's
        transaction (nor holds up a claim)."""
        if self._conn is None and not self.path.exists():
            return []
        with self._read_lock:
            if self._reader is None:
                self._db()  # the file and its tables exist first
                self._reader = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                self._reader.execute("PRAGMA busy_timeout=30000")
            return list(self._reader.execute(sql, params))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``) so that what it read
        cannot change before it writes."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT leaves it open too
                    db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ entries
    @staticmethod
    def _entry(row: tuple[Any, ...]) -> CacheEntry:
        key, run_id, sweep_id, finished_at, outputs, params, parts = row
        return CacheEntry(
            key=key,
            run_id=run_id,
            sweep_id=sweep_id,
            finished_at=finished_at,
            outputs=json.loads(outputs),
            params=json.loads(params),
            parts=json.loads(parts) if parts else {},
        )

    def get(self, key: str) -> CacheEntry | None:
        """The entry of ``key``: one queued here, else the file's (another process's)."""
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        rows = self._rows(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE key = ?", (key,))
        return self._entry(rows[0]) if rows else None

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            _insert_entry(self._db(), entry)

    def delete(self, key: str, *, run_id: str | None = None) -> None:
        """Drop the entry of ``key`` (only if it is still ``run_id``'s, when given)."""
        pending = self._pending.get(key)
        if pending is not None and (run_id is None or pending.run_id == run_id):
            self.flush()  # the queued one first, so that it is what is dropped
        if self._conn is not None or self.path.exists():
            with self._lock:
                if run_id is None:
                    self._db().execute("DELETE FROM entries WHERE key = ?", (key,))
                else:
                    self._db().execute(
                        "DELETE FROM entries WHERE key = ? AND run_id = ?", (key, run_id)
                    )

    def entries(self) -> list[CacheEntry]:
        self.flush()
        rows = self._rows(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY finished_at")
        return [self._entry(r) for r in rows]

    # ------------------------------------------------------------------ decisions
    def record(self, decision: Decision) -> None:
        """Keep ``decision`` (replacing an earlier one for the same run) and drop the oldest
        beyond :data:`MAX_DECISIONS`."""
        with self._write() as db:
            _insert_decisions(db, [decision])

    def decision(self, run_id: str) -> Decision | None:
        self.flush()
        rows = self._rows(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        run, sweep, key, at, verdict, detail, source, parts = rows[0]
        return Decision(
            run_id=run,
            sweep_id=sweep,
            key=key,
            decided_at=at,
            verdict=verdict,
            detail=detail,
            source_run_id=source,
            parts=json.loads(parts),
        )

    # ------------------------------------------------------------------ claims
    def claim(self, claim: Claim, alive: Callable[[Claim], bool]) -> Claim | None:
        """Claim ``claim.key`` for ``claim.run_id`` unless another run holds it and
        ``alive(holder)``; returns that live holder (None: the claim is ours). A key nobody
        holds (the common case) takes one statement."""
        mine = _claim_row(claim)
        with self._lock:
            if _inserted(self._db(), _CLAIM_FREE, mine):
                return None
        with self._write() as db:
            row = db.execute(
                "SELECT key, run_id, sweep_id, pid, pid_start, claimed_at FROM claims "
                "WHERE key = ?",
                (claim.key,),
            ).fetchone()
            if row is not None:
                key, run_id, sweep_id, pid, pid_start, claimed_at = row
                holder = Claim(
                    key=key,
                    run_id=run_id,
                    sweep_id=sweep_id,
                    pid=pid,
                    pid_start=pid_start,
                    claimed_at=claimed_at,
                )
                if holder.run_id != claim.run_id and alive(holder):
                    return holder
            db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)", mine)
        return None

    def claim_unanswered(self, claim: Claim) -> bool:
        """Claim ``claim.key`` in one statement if nobody holds it and no entry (queued here
        or in the file) answers it. True: the claim is ours and a lookup now would find no
        entry, so a miss needs no second look. False: decide with :meth:`claim` and a
        lookup (the common miss thus takes one statement instead of two)."""
        if claim.key in self._pending:
            return False
        with self._lock:
            return _inserted(self._db(), _CLAIM_UNANSWERED, _unanswered_row(claim))

    def claim_unanswered_now(self, claim: Claim) -> bool | None:
        """:meth:`claim_unanswered` on the calling thread (the event loop), when that costs
        no wait: on a connection that never waits for a lock (``busy_timeout`` 0) and never
        checkpoints (the writer thread's connection does, with its fsync). None when the file
        is busy (the writer thread or another orchestrator is writing) or the write failed:
        queue the claim with :meth:`claim_unanswered_later` instead. One small transaction
        (a WAL append, no fsync) instead of the writer thread's round trip, which on a busy
        2-core machine kept a short run from starting for ~2 ms, a fifth of its life
        (``benchmarks/bench_overhead.py``)."""
        if claim.key in self._pending:
            return False
        with self._quick_lock:
            db = self._quick_db()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:  # locked: someone is writing
                return None
            try:
                taken = _inserted(db, _CLAIM_UNANSWERED, _unanswered_row(claim))
                db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                return None
            return taken

    def _quick_db(self) -> sqlite3.Connection:
        if self._quick is None:
            self._db()  # the file and its tables exist first
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._quick = conn
        return self._quick

    def claim_unanswered_later(
        self, claim: Claim, answer: Callable[[bool], None], *, decision: Decision | None = None
    ) -> bool:
        """Queue :meth:`claim_unanswered`: ``answer(taken)`` is called on the writer thread
        once the claim's transaction has committed (False also when it failed); ``decision``
        is recorded in it when the claim is taken (a miss, decided by the claim itself).
        Returns False at once, and queues nothing, when an entry queued here answers the key."""
        if claim.key in self._pending:
            return False
        self._enqueue(
            _Later(claim=_unanswered_row(claim), answer=answer, decision_if_taken=decision)
        )
        return True

    def release(self, key: str, run_id: str) -> None:
        """Drop ``run_id``'s claim on ``key`` (a claim taken over since is left alone)."""
        if self._conn is not None or self.path.exists():
            with self._lock:
                self._db().execute("DELETE FROM claims WHERE key = ? AND run_id = ?", (key, run_id))

    def release_sweep(self, sweep_id: str, pid: int) -> None:
        """Drop every claim the process ``pid`` holds for a sweep (a safety net when it ends)."""
        if self._conn is not None or self.path.exists():
            with self._lock:
                self._db().execute(
                    "DELETE FROM claims WHERE sweep_id = ? AND pid = ?", (sweep_id, pid)
                )

    # ------------------------------------------------------------------ queued writes
    def put_later(
        self,
        entry: CacheEntry,
        *,
        confirm: Callable[[], bool] | None = None,
        release: bool = False,
    ) -> None:
        """Queue ``entry`` (answered by :meth:`get` here at once). Before it is written,
        ``confirm()`` runs on the writer thread (it may block: the journal's flush); False
        drops it. With ``release``, the run's claim on the key goes in the same transaction,
        so another process waiting on it finds the entry when the claim is gone."""
        released = (entry.key, entry.run_id) if release else None
        self._enqueue_late(_Later(entry=entry, confirm=confirm, release=released))

    def record_later(self, decision: Decision) -> None:
        """Queue :meth:`record`, with the entries (nobody waits for a decision: ``cache
        explain`` flushes first). Written at once, a run's miss cost the writer a
        transaction per run, and the file was busy for the next run's claim on the loop."""
        self._enqueue_late(_Later(decision=decision))

    def release_later(self, key: str, run_id: str) -> None:
        """Queue :meth:`release` (a claim taken over meanwhile is still left alone)."""
        self._enqueue(_Later(release=(key, run_id)))

    def release_sweep_later(self, sweep_id: str, pid: int) -> None:
        """Queue :meth:`release_sweep`."""
        self._enqueue_late(_Later(release_sweep=(sweep_id, pid)))

    def flush(self, timeout: float = 60.0) -> None:
        """Block until everything queued so far is written (or dropped)."""
        if self._writer is None or not self._writer.is_alive():
            return
        marker = _Flush(threading.Event())
        self._queue.put(marker)
        marker.done.wait(timeout)

    def _enqueue_late(self, item: _Later) -> None:
        """Hold ``item`` for the writer's next batch of late writes; only the first of a
        batch wakes the writer (to start its wait), the others ride along."""
        with self._pending_lock:
            if item.entry is not None:
                self._pending[item.entry.key] = item.entry
            self._late.append(item)
            first = len(self._late) == 1
        if first or self._writer is None or not self._writer.is_alive():
            self._enqueue(_WAKE)

    def _enqueue(self, item: Any) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_queued, name="cache-writer")
            self._writer.daemon = True
            self._writer.start()
        self._queue.put(item)

    def _write_queued(self) -> None:
        """The writer thread, until told to stop. Claims (and what piled up with them) are
        written at once: a run waits for its answer. Entries, decisions and sweep releases
        (held in ``_late``, waking the writer only for the first) wait up to :data:`LINGER_S` for
        others, to share one journal flush and one transaction, unless a flush or the stop
        asks for them sooner."""
        held: list[_Later] = []
        due = 0.0
        while True:
            batch = self._take(None if not held else max(0.0, due - time.monotonic()))
            with self._pending_lock:
                late, self._late = self._late, []
            batch += self._take(0.0) if late else []  # queued before those: written first
            if late and not held:
                due = time.monotonic() + LINGER_S
            held += late
            early = [b for b in batch if isinstance(b, _Later)]
            urgent = any(isinstance(b, _Flush) or b is _STOP for b in batch)
            now = urgent or len(held) >= 1000 or time.monotonic() >= due
            self._write_batch(early, held if now else [])
            if now:
                held = []
            for item in batch:
                if isinstance(item, _Flush):
                    item.done.set()
            if any(item is _STOP for item in batch):
                return

    def _take(self, timeout: float | None) -> list[Any]:
        """What has piled up (waiting up to ``timeout`` for the first; [] past it)."""
        try:
            first = self._queue.get_nowait() if timeout == 0.0 else self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < 5000:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_batch(self, early: list[_Later], late: list[_Later]) -> None:
        """Claims, decisions and plain releases in one transaction, the claims answered as
        soon as it commits; then entries (once confirmed) and sweep releases in another."""
        try:
            if early:
                self._commit_early(early)
        except (sqlite3.Error, OSError):
            pass  # the cache is an optimisation: a lost write costs a later miss
        try:
            if late:
                self._commit_late(late)
        except (sqlite3.Error, OSError):
            pass
        finally:
            self._forget_pending(late)

    def _forget_pending(self, writes: list[_Later]) -> None:
        """Written (or dropped): :meth:`get` reads these from the file now (an entry queued
        again for the same key meanwhile stays)."""
        with self._pending_lock:
            for write in writes:
                entry = write.entry
                if entry is not None and self._pending.get(entry.key) is entry:
                    del self._pending[entry.key]

    def _commit_early(self, writes: list[_Later]) -> None:
        answers: list[tuple[Callable[[bool], None], bool]] = []
        try:
            with self._write() as db:
                # The decisions in the order they came, in one go (one trim, not one each).
                decisions: list[Decision] = []
                for write in writes:
                    if write.decision is not None:
                        decisions.append(write.decision)
                    if write.claim is not None and write.answer is not None:
                        taken = _inserted(db, _CLAIM_UNANSWERED, write.claim)
                        if taken and write.decision_if_taken is not None:
                            decisions.append(write.decision_if_taken)
                        answers.append((write.answer, taken))
                    if write.release is not None:
                        db.execute("DELETE FROM claims WHERE key = ? AND run_id = ?", write.release)
                if decisions:
                    _insert_decisions(db, decisions)
        except BaseException:
            answers = [(w.answer, False) for w in writes if w.answer is not None]
            raise
        finally:
            for answer, taken in answers:
                _tell(answer, taken)

    def _commit_late(self, writes: list[_Later]) -> None:
        confirmed: dict[Callable[[], bool], bool] = {}
        for write in writes:
            if write.confirm is not None and write.confirm not in confirmed:
                confirmed[write.confirm] = write.confirm()
        with self._write() as db:
            decisions = [write.decision for write in writes if write.decision is not None]
            if decisions:
                _insert_decisions(db, decisions)
            for write in writes:
                confirm = write.confirm
                if write.entry is not None and (confirm is None or confirmed[confirm]):
                    _insert_entry(db, write.entry)
                if write.release is not None:
                    db.execute("DELETE FROM claims WHERE key = ? AND run_id = ?", write.release)
                if write.release_sweep is not None:
                    db.execute(
                        "DELETE FROM claims WHERE sweep_id = ? AND pid = ?", write.release_sweep
                    )

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file."""
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=60)
        self._writer = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._quick_lock:
            if self._quick is not None:
                self._quick.close()
                self._quick = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: A claim on a key nobody holds: one atomic statement (no change: someone holds it).
_CLAIM_FREE = "INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?, ?)"
#: The same, and only while no entry answers the key (atomic: an entry another process
#: commits with its claim let go is seen, or our claim is).
_CLAIM_UNANSWERED = (
    "INSERT OR IGNORE INTO claims SELECT ?, ?, ?, ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM entries WHERE key = ?)"
)


def _tell(answer: Callable[[bool], None], taken: bool) -> None:
    """Tell a claimant (the writer thread goes on whatever the callback does)."""
    with contextlib.suppress(Exception):  # say, the claimant's event loop has closed
        answer(taken)


def _claim_row(claim: Claim) -> tuple[Any, ...]:
    return (claim.key, claim.run_id, claim.sweep_id, claim.pid, claim.pid_start, claim.claimed_at)


def _unanswered_row(claim: Claim) -> tuple[Any, ...]:
    """The parameters of :data:`_CLAIM_UNANSWERED` for ``claim``."""
    return (*_claim_row(claim), claim.key)


def _inserted(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    """Run an ``INSERT OR IGNORE`` claim; whether it took (a row went in)."""
    before = db.total_changes
    db.execute(sql, params)
    return db.total_changes > before


def _insert_entry(db: sqlite3.Connection, entry: CacheEntry) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            entry.key,
            entry.run_id,
            entry.sweep_id,
            entry.finished_at,
            _json(entry.outputs),
            _json(entry.params),
            _json(entry.parts),
        ),
    )


def _insert_decisions(db: sqlite3.Connection, decisions: list[Decision]) -> None:
    """Keep ``decisions`` (each replacing an earlier one of its run, in order) and drop the
    oldest beyond :data:`MAX_DECISIONS`."""
    cursor = db.cursor()
    for decision in decisions:
        cursor.execute(
            f"INSERT OR REPLACE INTO decisions ({_DECISION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                decision.run_id,
                decision.sweep_id,
                decision.key,
                decision.decided_at,
                decision.verdict,
                decision.detail,
                decision.source_run_id,
                _json(decision.parts),
            ),
        )
    db.execute("DELETE FROM decisions WHERE rowid <= ?", ((cursor.lastrowid or 0) - MAX_DECISIONS,))


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
