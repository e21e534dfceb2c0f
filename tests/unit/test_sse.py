"""SSE framing of the event stream: a follower cut off or closed with frames still queued gets
every queued frame, then a clean end, never an error mid-response."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.daemon import hub as hub_module
from orchestrator.daemon.hub import Hub
from orchestrator.daemon.sse import event_frames
from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import LogLine


def _hub_with(n: int) -> Hub:
    hub, bus = Hub(), EventBus("s1")
    for i in range(n):
        hub.publish(bus.stamp(LogLine, run_id="r1", index=0, stream="stdout", line=str(i)))
    return hub


async def _body(hub: Hub, after: int) -> bytes:
    chunks = []
    with anyio.fail_after(5):
        async for chunk in event_frames(hub.follow(lambda event: True, after)):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.anyio
async def test_a_closed_hub_replays_what_is_queued_then_ends_cleanly() -> None:
    hub = _hub_with(3)
    hub.close()
    body = await _body(hub, after=0)
    assert body.startswith(b"retry: 1000\n\n")
    assert [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")] == [1, 2, 3]
    assert body.endswith(b"event: shutdown\ndata: {}\n\n")
    assert body.count(b"event: shutdown") == 1


@pytest.mark.anyio
async def test_a_replay_larger_than_the_queue_ends_after_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "FOLLOWER_QUEUE", 2)
    hub = _hub_with(5)
    body = await _body(hub, after=0)
    assert [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")] == [1, 2]
    assert body.endswith(b"event: shutdown\ndata: {}\n\n"), "the client resumes from id 2"
