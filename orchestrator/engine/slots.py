"""Run slots shared by several sweeps (the daemon's ``--max-runs``), served by priority.

Like :class:`anyio.CapacityLimiter`, but a freed slot goes to the waiting run of the highest
priority, first come first served among equals, so an urgent sweep submitted later overtakes
a large one already queued without stopping anything that runs.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

__all__ = ["PrioritySlots", "unless_stopped"]

T = TypeVar("T")


async def unless_stopped(stopped: anyio.Event, wait: Callable[[], Awaitable[T]]) -> T | None:
    """``await wait()``, unless ``stopped`` is set first: then None, and ``wait`` is
    cancelled (the waits given here give back what they held when cancelled)."""
    if stopped.is_set():
        return None
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await stopped.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        result = await wait()
        tg.cancel_scope.cancel()
    return result


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    event: anyio.Event = field(compare=False)
    gone: bool = field(default=False, compare=False)


class PrioritySlots:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        """Wait for a slot; higher ``priority`` first."""
        if self.used < self.total and not self._waiters:
            # Cancelled callers must not leave with the slot: check first, then take it
            # behind a shielded checkpoint (which cannot raise).
            await anyio.lowlevel.checkpoint_if_cancelled()
            self.used += 1
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(-priority, next(self._seq), anyio.Event())
        heapq.heappush(self._waiters, waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.event.is_set():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                waiter.gone = True
            raise

    def release(self) -> None:
        """Free a slot: hand it to the best waiter, if any."""
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.gone:
                waiter.event.set()  # the slot passes on; ``used`` is unchanged
                return
        self.used -= 1

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.gone)
