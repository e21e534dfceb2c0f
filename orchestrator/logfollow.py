"""Following a run's log file: its new bytes as they are written, until the run finishes.

One follower serves both ``logs -f`` paths: the daemon's SSE stream (woken by the hub's events
for that run) and ``logs -f`` without a daemon (woken by a short timer, since no events reach
another process). The file is read with ``aiofiles`` so the event loop never blocks on it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import aiofiles

__all__ = ["follow_log"]


async def follow_log(
    path: Path,
    offset: int,
    *,
    finished: Callable[[], Awaitable[bool]],
    wake: Callable[[], Awaitable[None]],
) -> AsyncGenerator[bytes, None]:
    """The bytes of ``path`` from ``offset`` on, then new ones as they are written: after
    each ``wake()`` (which returns when there may be more: an event, a timer) until
    ``finished()`` says the run is over; one last read then picks up what was written before
    the end. A file that does not exist (yet) reads as empty."""
    position = offset

    async def read() -> bytes:
        nonlocal position
        try:
            async with aiofiles.open(path, "rb") as f:
                await f.seek(position)
                data = await f.read()
        except FileNotFoundError:
            return b""
        position += len(data)
        return data

    data = await read()
    if data:
        yield data
    while not await finished():
        await wake()
        data = await read()
        if data:
            yield data
    data = await read()
    if data:
        yield data
