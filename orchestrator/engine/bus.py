"""The event bus: each subscriber gets its own ordered, bounded stream of the events it wants.

Publishing waits only when a subscriber's stream is full, so a slow observer slows the engine
instead of growing memory without bound; a subscriber that wants no ``LogLine`` costs nothing
per line (:meth:`EventBus.wants` lets the executor skip building the event at all).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.events import Event

__all__ = ["EventBus", "Subscription"]


@dataclass
class Subscription:
    types: frozenset[type]
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]


class EventBus:
    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id
        self._seq = itertools.count(1)
        self._subs: list[Subscription] = []

    def next_seq(self) -> int:
        return next(self._seq)

    @staticmethod
    def now() -> float:
        return time.time()

    def subscribe(self, types: Iterable[type], buffer: int = 1024) -> Subscription:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        sub = Subscription(frozenset(types), send, receive)
        self._subs.append(sub)
        return sub

    def wants(self, event_type: type) -> bool:
        return any(event_type in s.types for s in self._subs)

    async def publish(self, event: Event) -> None:
        for sub in self._subs:
            if type(event) in sub.types:
                try:
                    await sub.send.send(event)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    continue

    async def close(self) -> None:
        for sub in self._subs:
            await sub.send.aclose()
