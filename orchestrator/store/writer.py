"""The journal's writer: one thread that commits queued records, and what happens when it cannot.

Writes go through one writer thread that drains its queue into a single transaction, so a
transition costs a queue put, not an fsync (WAL with ``synchronous=NORMAL`` syncs only at
checkpoints). Kept apart from the journal's named writes and reads because this is where
durability is decided: which records sync the WAL, which are retried, which are dropped and
who is told.

Each named write is one *record* of a sweep: its statements commit together or not at all.
A *durable* record is one somebody will be told is accepted (a new or resumed sweep, added
configurations, a close): its transaction syncs the WAL, and whoever says "accepted" first
awaits :meth:`JournalWriter.commit`, which raises if it was not written (nothing was promised,
so nothing else happens). When a transaction fails (a full disk, an I/O error), its records
are tried one by one; the other records that still fail are dropped, and their sweeps are
marked :meth:`~JournalWriter.lost` and told (:meth:`~JournalWriter.watch`): the journal's
account of them is incomplete, so they end ``failed``. A sweep's final state is the one record
kept and retried until it commits, so that a sweep never stays ``running`` here after it
ended. Nothing is refused for good: later writes go on, and while the writer cannot write it
says so (:attr:`~JournalWriter.write_error`, :meth:`~JournalWriter.on_health`) and tries again
every :attr:`~JournalWriter.RETRY_S` seconds, so it recovers by itself. Readers wait with
:meth:`~JournalWriter.flush`, which never raises for a failed write.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.exceptions import StoreError

if TYPE_CHECKING:
    import asyncio

__all__ = ["JournalWriter"]

_Statement = tuple[str, tuple[Any, ...]]
_STOP = object()
#: What a write attempt may raise (a full disk, an I/O error, a lock held too long).
_WRITE_ERRORS = (sqlite3.Error, OSError)
_PROBE = "INSERT OR REPLACE INTO writer_probe (id, at) VALUES (1, ?)"


class _Record(NamedTuple):
    """The statements of one named write: committed together, or lost together. (A tuple:
    one is made per transition, so it must be cheap to make.)"""

    statements: tuple[_Statement, ...]
    #: The sweep it belongs to (losing it fails that sweep); None: no sweep's (a probe).
    sweep: str | None
    #: Kept after a failure and tried again until it commits; a newer record with the same
    #: key replaces it. Only a sweep's final state has one.
    retry: str | None = None
    #: Someone is told it is accepted once it commits: it is committed with the WAL synced
    #: (``synchronous=FULL``), and losing it refuses it to whoever awaits :meth:`commit`
    #: instead of failing its sweep (nothing was promised).
    durable: bool = False


#: Seconds :meth:`JournalWriter.commit` waits for the writer before it says the journal cannot
#: write (as long as :meth:`~JournalWriter.flush_sync` waits).
COMMIT_TIMEOUT_S = 60.0
#: Seconds the writer waits for more records after a wake with only a few, unless someone
#: waits for them (a flush, a commit, a durable record): one transaction for every run that
#: moved meanwhile instead of one per run's burst of transitions. A transaction's cost is
#: mostly fixed (its pages rewritten to the WAL): at 8 short runs in flight, 2 ms gathered
#: ~3 runs a transaction and 20 ms ~30, which halved the writer thread's CPU per run
#: (``benchmarks/bench_overhead.py``). Nobody waits on it: a reader flushes first.
LINGER_S = 0.02
#: A wake with at least this many records commits at once.
LINGER_BELOW = 1000


class _Gathering(threading.local):
    """Per thread: the records :meth:`JournalWriter.together` is gathering (None: not in one)."""

    records: list[_Record] | None = None


class _LoopEvent(threading.Event):
    """A flush marker's event that, once the writer sets it, also resolves ``future`` on the
    event loop: a commit or flush is awaited without a worker thread waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        super().set()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody awaits it
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class _Flush:
    """A flush waiting in the queue: set once every write queued before it was tried."""

    def __init__(self, failures: int) -> None:
        self.done = threading.Event()
        #: The writer's count of failed attempts when this was queued.
        self.failures = failures
        #: Why a write failed between then and now (None: none did).
        self.error: str | None = None


def _describe(exc: BaseException) -> str:
    """A write error as one line (SQLite's own words: ``database or disk is full``)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _waited_for(item: Any) -> bool:
    """Whether someone waits for ``item`` to be written (or the writer to stop)."""
    return isinstance(item, _Flush) or item is _STOP or getattr(item, "durable", False)


def _tell(listener: Callable[[Any], None], value: Any) -> None:
    """Call a watcher on the writer thread; one that raises must not stop the writer."""
    with contextlib.suppress(Exception):
        listener(value)


class JournalWriter:
    """The write side of a journal: records queued by its named writes, committed by one
    writer thread on its own connection (``write``), and the writer's health."""

    #: Seconds between attempts while the writer cannot write.
    RETRY_S = 1.0

    def __init__(self, path: Path, write: sqlite3.Connection) -> None:
        self.path = path
        self._write = write
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Why the last attempt failed, while the writer cannot write (None: writes commit).
        self._failing: str | None = None
        #: Failed attempts so far, and the error of the latest (for flushes to compare).
        self._failures = 0
        self._last_error: str | None = None
        #: Sweeps that lost a write, and why; who to tell when one does.
        self._lost: dict[str, str] = {}
        #: Sweeps whose last durable record was lost, and why (for :meth:`commit` to raise).
        self._refused: dict[str, str] = {}
        self._watchers: dict[str, Callable[[str], None]] = {}
        self._health: list[Callable[[str | None], None]] = []
        #: Records kept after a failure, to be tried again (by retry key, oldest first).
        self._retries: dict[str, _Record] = {}
        #: Records being gathered into one by :meth:`together`, per thread.
        self._gathering = _Gathering()
        #: Set when someone waits for what is queued: the writer stops lingering.
        self._urgent = threading.Event()
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.RETRY_S if self._failing else None)
            except queue.Empty:  # cannot write, and nothing new: try again
                self._attempt([], probe=True)
                continue
            batch = [item]
            self._drain(batch)
            if len(batch) < LINGER_BELOW and not any(map(_waited_for, batch)):
                # A run's transitions come a few at a time: gather them for a moment.
                self._urgent.wait(LINGER_S)
                self._drain(batch)
            self._urgent.clear()
            records = [b for b in batch if isinstance(b, _Record)]
            if records or self._retries:
                self._attempt(records)
            for b in batch:
                if isinstance(b, _Flush):
                    if b.failures != self._failures:
                        b.error = self._last_error
                    b.done.set()
            if any(b is _STOP for b in batch):
                return

    def _drain(self, batch: list[Any]) -> None:
        while len(batch) < 5000:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _put_urgent(self, item: Any) -> None:
        """Queue ``item``, which someone waits for: the writer does not linger over it."""
        self._queue.put(item)
        self._urgent.set()

    def _attempt(self, records: list[_Record], probe: bool = False) -> None:
        """Commit the kept records and ``records`` in one transaction; if that fails, each
        record in its own, so that only the ones that cannot be written are lost."""
        todo = records
        if self._retries:
            newer = {r.retry for r in records if r.retry is not None}
            todo = [r for key, r in self._retries.items() if key not in newer] + records
        if not todo and probe:  # nothing to write: does a write work again?
            todo = [_Record(((_PROBE, (time.time(),)),), None)]
        if not todo:
            return
        failed: list[tuple[_Record, str]] = []
        try:
            self._transaction(todo)
        except _WRITE_ERRORS as exc:
            if len(todo) == 1:
                failed.append((todo[0], _describe(exc)))
            else:
                for record in todo:
                    try:
                        self._transaction([record])
                    except _WRITE_ERRORS as each:
                        failed.append((record, _describe(each)))
        self._settle(todo, failed)

    def _transaction(self, records: list[_Record]) -> None:
        conn = self._write
        durable = any(r.durable for r in records)
        statements = itertools.chain.from_iterable(r.statements for r in records)
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            # Consecutive statements with the same SQL go in one executemany call.
            for sql, group in itertools.groupby(statements, key=lambda st: st[0]):
                conn.executemany(sql, [params for _, params in group])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            if durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=NORMAL")

    def _settle(self, tried: list[_Record], failed: list[tuple[_Record, str]]) -> None:
        """Keep the failed records that are retried, mark the sweeps that lost one, and tell
        their watchers and, when it changed, whether the writer can write."""
        if self._retries:
            for record in tried:
                if record.retry is not None:
                    self._retries.pop(record.retry, None)
        told: list[tuple[Callable[[str], None], str]] = []
        for record, error in failed:
            if record.retry is not None:
                self._retries[record.retry] = record
            if record.sweep is not None and record.durable:
                self._refused[record.sweep] = error
            elif record.sweep is not None and record.sweep not in self._lost:
                self._lost[record.sweep] = error
                watcher = self._watchers.get(record.sweep)
                if watcher is not None:
                    told.append((watcher, error))
        was = self._failing
        if failed:
            self._failures += 1
            self._failing = self._last_error = failed[-1][1]
        else:
            self._failing = None
        for watcher, error in told:
            _tell(watcher, error)
        if (was is None) != (self._failing is None):
            for listener in list(self._health):
                _tell(listener, self._failing)

    def _add(
        self,
        *statements: _Statement,
        sweep: str | None,
        retry: str | None = None,
        durable: bool = False,
    ) -> None:
        record = _Record(tuple(statements), sweep, retry, durable)
        gathering = self._gathering.records
        if gathering is not None:
            gathering.append(record)
        elif durable:
            self._put_urgent(record)
        else:
            self._queue.put(record)

    @contextlib.contextmanager
    def together(self, sweep_id: str) -> Iterator[None]:
        """The writes made in this block (on this thread) are one record of ``sweep_id``:
        committed together or lost together. Nothing is queued if the block raises."""
        gathered: list[_Record] = []
        self._gathering.records = gathered
        try:
            yield
        finally:
            self._gathering.records = None
        if not gathered:
            return
        retry = next((r.retry for r in reversed(gathered) if r.retry is not None), None)
        self._add(
            *(s for r in gathered for s in r.statements),
            sweep=sweep_id,
            retry=retry,
            durable=any(r.durable for r in gathered),
        )

    # ------------------------------------------------------------------ waiting, health
    def flush_sync(
        self, timeout: float = 60.0, *, sweep_id: str | None = None, check: bool = True
    ) -> None:
        """Block until every write queued so far has been tried.

        With ``check`` (the default), raise StoreError if one of them failed, or, given
        ``sweep_id``, if a write of that sweep was lost (whenever it was queued) or its last
        durable record was refused. With ``check=False`` only wait: afterwards, reads see
        everything that committed."""
        marker = _Flush(self._failures)
        self._put_urgent(marker)
        finished = marker.done.wait(timeout)
        if not check:
            return
        if not finished:
            raise StoreError(f"the journal at {self.path} did not write within {timeout:g}s")
        if sweep_id is not None:
            error = self._lost.get(sweep_id) or self._refused.pop(sweep_id, None)
        else:
            error = marker.error
        if error is not None:
            raise StoreError(f"journal write failed: {error}")

    async def keep_up(self, limit: int = 10_000) -> None:
        """Wait, off the event loop, while more than ``limit`` records are queued: a producer
        faster than the disk (a million short runs) waits here instead of growing the queue
        without bound."""
        if self._queue.qsize() > limit:
            await self.flush()

    async def commit(self, sweep_id: str) -> None:
        """Wait until every write of ``sweep_id`` queued so far is committed; StoreError if
        one was lost (or nothing committed within :data:`COMMIT_TIMEOUT_S`). Nothing is
        "accepted" before this returns, and a cancelled caller still waits for the answer (as
        a waiting thread did). Records queued while one transaction commits go in the next
        (a group commit)."""
        import anyio

        with anyio.CancelScope(shield=True):
            waited = await self._tried()
        if waited is None:  # another event loop: a worker thread waits instead
            await anyio.to_thread.run_sync(functools.partial(self.flush_sync, sweep_id=sweep_id))
            return
        if not waited:
            raise StoreError(
                f"the journal at {self.path} did not write within {COMMIT_TIMEOUT_S:g}s"
            )
        error = self._lost.get(sweep_id) or self._refused.pop(sweep_id, None)
        if error is not None:
            raise StoreError(f"journal write failed: {error}")

    async def flush(self) -> None:
        """Wait until everything queued has been tried (for readers). A failed write is not
        raised here: its sweep is told, and :attr:`write_error` says."""
        if await self._tried() is None:
            import anyio

            await anyio.to_thread.run_sync(functools.partial(self.flush_sync, check=False))

    async def _tried(self) -> bool | None:
        """Wait until the writer has tried every write queued so far: True, or False after
        :data:`COMMIT_TIMEOUT_S`. On asyncio the writer wakes the loop itself (the hand-offs
        through a worker thread cost a submission more than its commit); None, having waited
        for nothing, on another event loop."""
        import asyncio  # lazily: reading the journal (``ls``) needs no event loop

        import anyio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        marker = _Flush(self._failures)
        marker.done = done = _LoopEvent(loop)
        self._put_urgent(marker)
        with anyio.move_on_after(COMMIT_TIMEOUT_S) as waited:
            await done.future
        return not waited.cancelled_caught

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, while the writer cannot write; None while writes
        commit."""
        return self._failing

    def on_health(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(error)`` when the writer starts failing and ``listener(None)`` when
        it writes again; on the writer thread, so it must not block."""
        self._health.append(listener)

    def lost(self, sweep_id: str) -> str | None:
        """Why a write of that sweep was lost; None if none was (since :meth:`forget`)."""
        return self._lost.get(sweep_id)

    def watch(self, sweep_id: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(error)`` when a write of that sweep is lost, on the writer thread
        (it must not block, and may be told twice); at once if one already was."""
        self._watchers[sweep_id] = callback
        error = self._lost.get(sweep_id)
        if error is not None:
            _tell(callback, error)

    def forget(self, sweep_id: str) -> None:
        """Drop that sweep's watcher and its lost writes (its controller is done, or it is
        about to start afresh). A final state waiting to be retried stays."""
        self._watchers.pop(sweep_id, None)
        self._lost.pop(sweep_id, None)
        self._refused.pop(sweep_id, None)

    def close(self) -> None:
        """Stop the writer once everything queued so far has been tried, and close its
        connection."""
        if self._thread.is_alive():
            self._put_urgent(_STOP)
            self._thread.join(timeout=60)
        self._write.close()
