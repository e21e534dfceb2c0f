"""The event bus of one sweep: each subscriber gets its own ordered, bounded stream of the
events it wants.

:meth:`EventBus.emit` stamps every event with the sweep id, the next sequence number and the
time, so no producer numbers events itself. Publishing waits only when a subscriber's stream is
full, so a slow observer slows the engine instead of growing memory without bound; a subscriber
that wants no ``LogLine`` costs nothing per line (:meth:`EventBus.wants` lets the producer skip
building the event at all).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.events import Event, EventBase

__all__ = ["EventBus", "Subscription"]

E = TypeVar("E", bound=EventBase)


@dataclass
class Subscription:
    types: frozenset[type]
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]
    #: Events sent, and events the consumer says it has handled (see :meth:`handled`).
    sent: int = 0
    done: int = 0
    consumer_gone: bool = False
    _caught_up: anyio.Event | None = None
    #: Of those types, only the events this says yes to (None: all); asked per event, so
    #: a consumer that cares about a few (a failed run) is not woken for the rest.
    accept: Callable[[Event], bool] | None = None

    def wants(self, event: Event) -> bool:
        return type(event) in self.types and (self.accept is None or self.accept(event))

    def handled(self, count: int = 1) -> None:
        """The consumer finished ``count`` more events."""
        self.done += count
        if self.done >= self.sent and self._caught_up is not None:
            self._caught_up.set()

    def gone(self) -> None:
        """The consumer stopped reading: nobody is left to wait for."""
        self.done = self.sent = max(self.done, self.sent)
        self.consumer_gone = True
        if self._caught_up is not None:
            self._caught_up.set()

    async def wait_caught_up(self) -> None:
        """Return once every event sent so far has been handled (or the consumer is gone)."""
        while self.done < self.sent and not self.consumer_gone:
            self._caught_up = anyio.Event()
            await self._caught_up.wait()


class EventBus:
    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id
        self._seq = itertools.count(1)
        self._subs: list[Subscription] = []

    def stamp(self, kind: type[E], **fields: Any) -> E:
        """A new event of ``kind`` from this sweep, numbered and timed now."""
        return kind(sweep_id=self.sweep_id, seq=next(self._seq), ts=time.time(), **fields)

    async def emit(self, kind: type[E], **fields: Any) -> E:
        """Stamp and publish an event; returns it."""
        event = self.stamp(kind, **fields)
        await self.publish(cast(Event, event))
        return event

    def subscribe(
        self,
        types: Iterable[type],
        buffer: int = 1024,
        accept: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        sub = Subscription(frozenset(types), send, receive, accept=accept)
        self._subs.append(sub)
        return sub

    def wants(self, event_type: type) -> bool:
        return any(event_type in s.types for s in self._subs)

    async def publish(self, event: Event, skip: Iterable[Subscription] = ()) -> None:
        """Send ``event`` to every subscriber that wants it (but those in ``skip``)."""
        skipped = {id(sub) for sub in skip} if skip else ()
        for sub in self._subs:
            if sub.wants(event) and id(sub) not in skipped:
                await self._send(sub, event)

    @staticmethod
    async def _send(sub: Subscription, event: Event) -> None:
        """Without a trip through the event loop while there is room (the common case);
        waiting only for a full stream."""
        try:
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                await sub.send.send(event)
            sub.sent += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def send_to(self, event: Event, subscriptions: list[Subscription]) -> None:
        for sub in subscriptions:
            await self._send(sub, event)

    def publish_nowait(self, event: Event) -> list[Subscription]:
        """Publish without waiting; returns the subscribers whose stream was full."""
        full = []
        for sub in self._subs:
            if sub.wants(event):
                try:
                    sub.send.send_nowait(event)
                    sub.sent += 1
                except anyio.WouldBlock:
                    full.append(sub)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    continue
        return full

    async def close(self) -> None:
        for sub in self._subs:
            await sub.send.aclose()
