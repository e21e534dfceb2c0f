"""The SSE hub: frame encoding, ids, filters, replay from the ring, slow followers, closing."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import msgspec
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.daemon import hub as hub_module
from orchestrator.daemon.hub import Frame, Hub
from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import Event, LogLine, RunStateChanged
from orchestrator.engine.states import RunState


def everything(event: Event) -> bool:
    return True


def only_logs(event: Event) -> bool:
    return isinstance(event, LogLine)


class Events:
    """Builds events for one sweep: the one place that knows how events get their header."""

    def __init__(self) -> None:
        self.bus = EventBus("sweep-1")

    def log(self, text: str, run_id: str = "r1") -> LogLine:
        return self.bus.stamp(LogLine, run_id=run_id, index=0, stream="stdout", line=text)

    def state(self, to: RunState, run_id: str = "r1") -> RunStateChanged:
        return self.bus.stamp(
            RunStateChanged, run_id=run_id, index=0, previous=RunState.CREATED, state=to
        )


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.close()  # closes the sending end of every follower still attached


def buffered(stream: MemoryObjectReceiveStream[Frame]) -> list[Frame]:
    """The frames waiting in ``stream`` now, without waiting for more."""
    got: list[Frame] = []
    while True:
        try:
            got.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return got


def until_end(stream: MemoryObjectReceiveStream[Frame]) -> list[Frame]:
    """The frames waiting in ``stream``, which must then be over (EndOfStream, not WouldBlock)."""
    got: list[Frame] = []
    while True:
        try:
            got.append(stream.receive_nowait())
        except anyio.EndOfStream:
            return got


def ids(frames: list[Frame]) -> list[int]:
    return [f.id for f in frames]


def test_a_frame_is_id_event_and_json_data_then_a_blank_line(hub: Hub, events: Events) -> None:
    event = events.log("hello")
    with hub.follow(everything) as stream:
        hub.publish(event)
        (frame,) = buffered(stream)
    data = msgspec.json.encode(event)
    assert frame.id == 1
    assert frame.event == event
    assert frame.data == data
    assert frame.encode() == b"id: 1\nevent: LogLine\ndata: " + data + b"\n\n"
    decoded = msgspec.json.decode(frame.data, type=Event)
    assert decoded == event
    assert msgspec.json.decode(frame.data)["type"] == "log_line"


def test_newlines_in_an_event_stay_inside_one_data_line(hub: Hub, events: Events) -> None:
    with hub.follow(everything) as stream:
        hub.publish(events.log("two\nlines\r\n\n"))
        (frame,) = buffered(stream)
    encoded = frame.encode()
    assert encoded.endswith(b"\n\n")
    assert encoded.count(b"\n") == 4  # id, event, data, blank: nothing splits the data line
    assert b"\r" not in encoded
    assert msgspec.json.decode(frame.data, type=Event) == frame.event


def test_frame_ids_increase_by_one_across_all_events(hub: Hub, events: Events) -> None:
    with hub.follow(everything) as all_frames, hub.follow(only_logs) as logs:
        for i in range(3):
            hub.publish(events.log(str(i)))
            hub.publish(events.state(RunState.QUEUED))
        got = buffered(all_frames)
        got_logs = buffered(logs)
    assert ids(got) == [1, 2, 3, 4, 5, 6]
    assert [f.encode().split(b"\n")[0] for f in got] == [b"id: %d" % i for i in range(1, 7)]
    # Ids are the hub's, not the follower's: a filtered follower sees the gaps.
    assert ids(got_logs) == [1, 3, 5]


def test_follow_gets_only_what_its_filter_accepts(hub: Hub, events: Events) -> None:
    def run_two(event: Event) -> bool:
        return getattr(event, "run_id", None) == "r2"

    mixed: list[Event] = [
        events.log("a", run_id="r1"),
        events.state(RunState.QUEUED, run_id="r2"),
        events.log("b", run_id="r2"),
        events.state(RunState.RUNNING, run_id="r1"),
    ]
    with hub.follow(only_logs) as logs, hub.follow(run_two) as r2:
        for event in mixed:
            hub.publish(event)
        assert [f.event for f in buffered(logs)] == [mixed[0], mixed[2]]
        assert [f.event for f in buffered(r2)] == [mixed[1], mixed[2]]


def test_replay_after_an_id_gives_only_later_accepted_frames_then_live_ones(
    hub: Hub, events: Events
) -> None:
    for i in range(3):
        hub.publish(events.log(str(i)))  # ids 1, 3, 5
        hub.publish(events.state(RunState.QUEUED))  # ids 2, 4, 6
    with hub.follow(only_logs, after=2) as replayed:
        assert ids(buffered(replayed)) == [3, 5]
        hub.publish(events.state(RunState.RUNNING))  # 7: filtered out
        hub.publish(events.log("live"))  # 8
        assert ids(buffered(replayed)) == [8]


def test_replay_from_zero_gives_the_whole_ring_and_from_the_last_id_nothing(
    hub: Hub, events: Events
) -> None:
    for i in range(4):
        hub.publish(events.log(str(i)))
    with hub.follow(everything, after=0) as from_zero, hub.follow(everything, after=4) as caught:
        assert ids(buffered(from_zero)) == [1, 2, 3, 4]
        assert buffered(caught) == []


def test_without_after_nothing_is_replayed(hub: Hub, events: Events) -> None:
    hub.publish(events.log("before"))
    with hub.follow(everything) as stream:
        assert buffered(stream) == []
        hub.publish(events.log("after"))
        assert ids(buffered(stream)) == [2]


def test_the_ring_keeps_only_the_last_ring_frames(
    monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    monkeypatch.setattr(hub_module, "RING", 5)
    hub = Hub()
    try:
        for i in range(8):
            hub.publish(events.log(str(i)))
        with hub.follow(everything, after=0) as stream:
            assert ids(buffered(stream)) == [4, 5, 6, 7, 8]
        with hub.follow(everything, after=6) as stream:
            assert ids(buffered(stream)) == [7, 8]
    finally:
        hub.close()


def test_the_default_ring_is_bounded(events: Events) -> None:
    """The real constant, without patching: publishing is cheap enough to overflow it."""
    hub = Hub()
    event = events.log("x")
    try:
        for _ in range(hub_module.RING + 3):
            hub.publish(event)
        with hub.follow(lambda e: False, after=0) as none, hub.follow(everything, after=0) as all_:
            assert buffered(none) == []
            first = all_.receive_nowait()
        assert first.id == 4  # the three oldest fell out of the ring
    finally:
        hub.close()


def test_a_full_follower_is_cut_off_and_the_others_keep_receiving(
    monkeypatch: pytest.MonkeyPatch, hub: Hub, events: Events
) -> None:
    monkeypatch.setattr(hub_module, "FOLLOWER_QUEUE", 3)
    with hub.follow(everything) as slow, hub.follow(everything) as fast:
        for i in range(3):
            hub.publish(events.log(str(i)))
        assert ids(buffered(fast)) == [1, 2, 3]  # the fast one reads; the slow one is full
        hub.publish(events.log("overflow"))  # 4: no room for the slow one
        hub.publish(events.log("more"))  # 5
        assert ids(buffered(fast)) == [4, 5]
        # The slow one drains what it had, then its stream is over (not merely empty).
        assert ids(until_end(slow)) == [1, 2, 3]
        with pytest.raises(anyio.EndOfStream):
            slow.receive_nowait()
        # It comes back with its last id and is replayed what it missed, then goes on live.
        with hub.follow(everything, after=3) as back:
            assert ids(buffered(back)) == [4, 5]
            hub.publish(events.log("live"))
            assert ids(buffered(back)) == [6]
            assert ids(buffered(fast)) == [6]


def test_a_follower_that_stopped_reading_is_dropped_without_disturbing_others(
    hub: Hub, events: Events
) -> None:
    with hub.follow(everything) as stays:
        gone = hub.follow(everything)
        gone.close()
        hub.publish(events.log("a"))
        hub.publish(events.log("b"))
        assert ids(buffered(stays)) == [1, 2]


def test_close_ends_every_follower_after_what_it_had(hub: Hub, events: Events) -> None:
    with hub.follow(everything) as a, hub.follow(only_logs) as b:
        hub.publish(events.log("x"))
        hub.publish(events.state(RunState.QUEUED))
        hub.close()
        assert hub.closed
        assert ids(until_end(a)) == [1, 2]
        assert ids(until_end(b)) == [1]


def test_after_close_follow_gives_an_ended_stream(hub: Hub, events: Events) -> None:
    hub.publish(events.log("x"))
    hub.close()
    with hub.follow(everything) as live:
        assert until_end(live) == []
    # A resuming follower still gets its replay, then the end.
    with hub.follow(everything, after=0) as resumed:
        assert ids(until_end(resumed)) == [1]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_close_ends_an_async_for_over_the_stream(hub: Hub, events: Events) -> None:
    got: list[int] = []
    ended = anyio.Event()

    async def consume(stream: MemoryObjectReceiveStream[Frame]) -> None:
        async with stream:
            async for frame in stream:
                got.append(frame.id)
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, hub.follow(everything))
            await anyio.wait_all_tasks_blocked()
            hub.publish(events.log("a"))
            await anyio.wait_all_tasks_blocked()
            assert got == [1]
            assert not ended.is_set()
            hub.close()
            await ended.wait()
    assert got == [1]


def test_a_replay_larger_than_the_queue_never_leaves_a_silent_gap(
    monkeypatch: pytest.MonkeyPatch, hub: Hub, events: Events
) -> None:
    monkeypatch.setattr(hub_module, "FOLLOWER_QUEUE", 3)
    for i in range(5):
        hub.publish(events.log(str(i)))
    seen: list[int] = []
    with hub.follow(everything, after=0) as stream:
        for publish_live in (False, True):
            if publish_live:
                hub.publish(events.log("live"))  # 6
            try:
                while True:
                    seen.append(stream.receive_nowait().id)
            except anyio.WouldBlock:
                continue
            except anyio.EndOfStream:
                break  # cut off after the replay: the client resumes from its last id
    # Either the stream ended after [1, 2, 3] or it went on with 4, 5, 6: never 3 then 6.
    assert seen[:3] == [1, 2, 3]
    assert seen == list(range(1, len(seen) + 1))
