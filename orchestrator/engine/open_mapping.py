"""Configurations added while a sweep runs (the daemon's ask/tell), until it is closed."""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

__all__ = ["OpenMapping"]


class OpenMapping:
    """A queue of mapping entries the feed waits on once the spec's own entries run out."""

    def __init__(self, next_index: int) -> None:
        self.next_index = next_index
        self.closed = False
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = anyio.Event()

    def add(self, values: list[dict[str, Any]]) -> list[int]:
        indexes = list(range(self.next_index, self.next_index + len(values)))
        self.next_index += len(values)
        self._pending.extend(values)
        self._wake.set()
        return indexes

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> dict[str, Any] | None:
        while not self._pending:
            if self.closed:
                return None
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._pending.popleft()
