"""The web page's heavy reads (metric series, each sweep's best run), in worker threads on read
connections of their own, so that a million-point answer never holds the daemon's event loop
(whose journal connection serves every other request meanwhile).

A few connections at most (:data:`READERS`), opened when first needed and kept; each is used
by one thread at a time.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from orchestrator.store.series import SeriesReader, open_reader

__all__ = ["READERS", "PageReads"]

#: Reads of this kind that run at once (more wait their turn).
READERS = 2
_T = TypeVar("_T")


class PageReads:
    """Runs ``read(reader)`` in a worker thread with a free :class:`SeriesReader`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._limiter = anyio.CapacityLimiter(READERS)
        self._free: queue.SimpleQueue[SeriesReader] = queue.SimpleQueue()

    def _with_reader(self, read: Callable[[SeriesReader], _T]) -> _T:
        try:
            reader = self._free.get_nowait()
        except queue.Empty:
            reader = SeriesReader(open_reader(self.path), self.path)
        try:
            return read(reader)
        finally:
            self._free.put(reader)

    async def run(self, read: Callable[[SeriesReader], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._with_reader, read, limiter=self._limiter)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().conn.close()
            except queue.Empty:
                return
