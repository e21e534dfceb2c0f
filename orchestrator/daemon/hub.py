"""Fan-out of events to Server-Sent-Event followers, with a replay ring.

Each event is encoded once (``id: N / event: TYPE / data: JSON``) and appended to a ring of
the last 10,000; every follower has a bounded queue, filled without waiting. A follower whose
queue is full is cut off (its stream ends) and can come back with ``Last-Event-ID`` to be
replayed from the ring, so a slow reader never slows the engine or grows memory.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.events import Event

__all__ = ["Frame", "Hub"]

RING = 10_000
FOLLOWER_QUEUE = 2_000


@dataclass(frozen=True)
class Frame:
    id: int
    event: Event
    data: bytes

    def encode(self) -> bytes:
        kind = type(self.event).__name__
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, kind.encode(), self.data)


@dataclass
class _Follower:
    send: MemoryObjectSendStream[Frame]
    accept: Callable[[Event], bool]


class Hub:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._ring: deque[Frame] = deque(maxlen=RING)
        self._followers: list[_Follower] = []
        self.closed = False

    def publish(self, event: Event) -> None:
        frame = Frame(next(self._ids), event, msgspec.json.encode(event))
        self._ring.append(frame)
        for follower in list(self._followers):
            if not follower.accept(event):
                continue
            try:
                follower.send.send_nowait(frame)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                follower.send.close()  # too slow: cut off; it may resume with Last-Event-ID
                self._followers.remove(follower)

    def follow(
        self,
        accept: Callable[[Event], bool],
        after: int | None = None,
    ) -> MemoryObjectReceiveStream[Frame]:
        """A stream of frames (replayed from ``after`` when given), until the hub closes.

        A replay larger than the follower's queue ends the stream once the queue is drained,
        like a follower cut off for being slow: the client resumes from its last id, and never
        sees live frames after a silent gap."""
        send, receive = anyio.create_memory_object_stream[Frame](FOLLOWER_QUEUE)
        cut_off = False
        if after is not None:
            for frame in list(self._ring):
                if frame.id > after and accept(frame.event):
                    try:
                        send.send_nowait(frame)
                    except anyio.WouldBlock:
                        cut_off = True
                        break
        if self.closed or cut_off:
            send.close()
        else:
            self._followers.append(_Follower(send, accept))
        return receive

    def close(self) -> None:
        """End every follower's stream (the daemon is shutting down)."""
        self.closed = True
        for follower in self._followers:
            follower.send.close()
        self._followers.clear()
