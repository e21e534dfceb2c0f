"""The event bus: per-subscriber order, type filters, backpressure, catching up, closing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
import pytest

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.events import (
    Event,
    LogLine,
    MetricReported,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
)
from orchestrator.engine.states import RunState, SweepState

pytestmark = pytest.mark.anyio

E = TypeVar("E", LogLine, RunStateChanged, SweepFinished)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus("sweep-1")
    yield bus
    await bus.close()
    for sub in bus._subs:  # close the receiving ends the test left open (ResourceWarning)
        sub.receive.close()


def make(bus: EventBus, cls: type[E], **fields: Any) -> E:
    """Build an event stamped by ``bus``: the one place that knows how events get their header."""
    return bus.stamp(cls, **fields)


def log(bus: EventBus, text: str, run_id: str = "r1") -> LogLine:
    return make(bus, LogLine, run_id=run_id, index=0, stream="stdout", line=text)


def state(bus: EventBus, to: RunState, run_id: str = "r1") -> RunStateChanged:
    return make(bus, RunStateChanged, run_id=run_id, index=0, previous=RunState.CREATED, state=to)


def drain(sub: Subscription) -> list[Event]:
    """Everything already buffered for ``sub``, without waiting."""
    got: list[Event] = []
    while True:
        try:
            got.append(sub.receive.receive_nowait())
        except anyio.WouldBlock:
            return got


async def test_stamp_numbers_events_from_one_with_the_sweep_id_and_time(bus: EventBus) -> None:
    first, second = log(bus, "a"), log(bus, "b")
    assert (first.sweep_id, first.seq) == ("sweep-1", 1)
    assert (second.sweep_id, second.seq) == ("sweep-1", 2)
    assert 0 < first.ts <= second.ts


async def test_emit_stamps_publishes_and_returns_the_event(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine])
    log(bus, "numbered but never published")
    event = await bus.emit(LogLine, run_id="r", index=3, stream="stderr", line="x")
    assert (event.sweep_id, event.seq, event.run_id, event.line) == ("sweep-1", 2, "r", "x")
    assert drain(sub) == [event]


async def test_each_subscriber_gets_events_in_publish_order(bus: EventBus) -> None:
    a = bus.subscribe([LogLine], buffer=100)
    b = bus.subscribe([LogLine], buffer=100)
    events = [log(bus, f"line {i}") for i in range(50)]
    for event in events:
        await bus.publish(event)
    assert drain(a) == events
    assert drain(b) == events
    assert (a.sent, b.sent) == (50, 50)


async def test_order_holds_while_a_consumer_reads_concurrently_through_a_small_buffer(
    bus: EventBus,
) -> None:
    sub = bus.subscribe([LogLine], buffer=2)
    events = [log(bus, str(i)) for i in range(200)]
    got: list[Event] = []

    async def consume() -> None:
        async with sub.receive:
            async for event in sub.receive:
                got.append(event)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for event in events:
                await bus.publish(event)
            await bus.close()
    assert got == events


async def test_a_subscriber_gets_only_the_types_it_asked_for(bus: EventBus) -> None:
    logs = bus.subscribe([LogLine])
    states = bus.subscribe([RunStateChanged])
    both = bus.subscribe([LogLine, RunStateChanged])
    metrics = bus.subscribe([MetricReported])
    mixed: list[Event] = [
        log(bus, "a"),
        state(bus, RunState.QUEUED),
        log(bus, "b"),
        state(bus, RunState.RUNNING),
    ]
    for event in mixed:
        await bus.publish(event)
    assert drain(logs) == [mixed[0], mixed[2]]
    assert drain(states) == [mixed[1], mixed[3]]
    assert drain(both) == mixed
    assert drain(metrics) == []
    assert (logs.sent, states.sent, both.sent, metrics.sent) == (2, 2, 4, 0)


async def test_an_event_nobody_wants_reaches_nobody(bus: EventBus) -> None:
    started = bus.subscribe([SweepStarted])
    event = make(bus, SweepFinished, state=SweepState.SUCCEEDED, reason=None, counts={})
    await bus.publish(event)
    assert bus.publish_nowait(event) == []
    assert drain(started) == []
    assert started.sent == 0


async def test_wants_is_true_only_for_a_type_some_subscriber_asked_for(bus: EventBus) -> None:
    assert not bus.wants(LogLine)
    bus.subscribe([RunStateChanged, SweepFinished])
    assert bus.wants(RunStateChanged)
    assert bus.wants(SweepFinished)
    assert not bus.wants(LogLine)
    bus.subscribe([LogLine])
    assert bus.wants(LogLine)
    assert not bus.wants(MetricReported)


async def test_a_full_subscriber_makes_publish_wait_until_it_reads(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine], buffer=1)
    first, second = log(bus, "first"), log(bus, "second")
    await bus.publish(first)  # fills the buffer
    published = anyio.Event()

    async def publisher() -> None:
        await bus.publish(second)
        published.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher)
            await anyio.wait_all_tasks_blocked()
            assert not published.is_set(), "publish must wait while the stream is full"
            assert sub.sent == 1
            assert await sub.receive.receive() == first  # the consumer reads: room for one
            await published.wait()
    assert sub.sent == 2
    assert drain(sub) == [second]


async def test_publish_nowait_returns_the_full_subscriptions_and_does_not_deliver_to_them(
    bus: EventBus,
) -> None:
    small = bus.subscribe([LogLine], buffer=1)
    big = bus.subscribe([LogLine], buffer=10)
    other = bus.subscribe([RunStateChanged], buffer=1)
    first, second = log(bus, "1"), log(bus, "2")
    assert bus.publish_nowait(first) == []
    full = bus.publish_nowait(second)
    assert full == [small]
    assert full[0] is small
    assert drain(small) == [first]
    assert drain(big) == [first, second]
    assert (small.sent, big.sent) == (1, 2)
    # A full stream of a subscriber that does not want the type is never reported.
    assert bus.publish_nowait(state(bus, RunState.QUEUED)) == []
    assert bus.publish_nowait(state(bus, RunState.RUNNING)) == [other]


async def test_send_to_delivers_only_to_the_given_subscriptions_whatever_their_types(
    bus: EventBus,
) -> None:
    chosen = bus.subscribe([RunStateChanged])
    skipped = bus.subscribe([LogLine])
    event = log(bus, "x")
    await bus.send_to(event, [chosen])
    assert drain(chosen) == [event]
    assert drain(skipped) == []
    assert (chosen.sent, skipped.sent) == (1, 0)


async def test_a_closed_receiver_does_not_break_publishing(bus: EventBus) -> None:
    closed = bus.subscribe([LogLine], buffer=1)
    alive = bus.subscribe([LogLine], buffer=10)
    await closed.receive.aclose()
    events = [log(bus, str(i)) for i in range(3)]
    with anyio.fail_after(5):
        await bus.publish(events[0])
        assert bus.publish_nowait(events[1]) == [], "a closed stream is not a full one"
        await bus.send_to(events[2], [closed, alive])
    assert drain(alive) == events
    assert closed.sent == 0


async def test_wait_caught_up_returns_once_every_sent_event_was_handled(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine])
    await bus.publish(log(bus, "a"))
    await bus.publish(log(bus, "b"))
    caught_up = anyio.Event()

    async def waiter() -> None:
        await sub.wait_caught_up()
        caught_up.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not caught_up.is_set()
            sub.handled()
            await anyio.wait_all_tasks_blocked()
            assert not caught_up.is_set(), "one of two events handled is not caught up"
            sub.handled()
            await caught_up.wait()
    assert (sub.sent, sub.done) == (2, 2)


async def test_wait_caught_up_also_waits_for_events_sent_while_it_was_waking(
    bus: EventBus,
) -> None:
    sub = bus.subscribe([LogLine])
    await bus.publish(log(bus, "a"))
    caught_up = anyio.Event()

    async def waiter() -> None:
        await sub.wait_caught_up()
        caught_up.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            sub.handled()  # caught up for a moment: the waiter is woken...
            assert bus.publish_nowait(log(bus, "b")) == []  # ...but one more is sent first
            await anyio.wait_all_tasks_blocked()
            assert not caught_up.is_set(), "the event sent before it woke is still pending"
            sub.handled()
            await caught_up.wait()
    assert (sub.sent, sub.done) == (2, 2)


async def test_wait_caught_up_returns_at_once_when_nothing_is_pending(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine])
    await bus.publish(log(bus, "a"))
    sub.handled()
    returned = anyio.Event()

    async def waiter() -> None:
        await sub.wait_caught_up()
        returned.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert returned.is_set()


async def test_wait_caught_up_returns_when_the_consumer_is_gone(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine])
    for i in range(3):
        await bus.publish(log(bus, str(i)))
    returned = anyio.Event()

    async def waiter() -> None:
        await sub.wait_caught_up()
        returned.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not returned.is_set()
            sub.gone()
            await returned.wait()
    assert sub.consumer_gone
    # Once gone, later events leave nothing to wait for either.
    await bus.publish(log(bus, "late"))
    returned = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert returned.is_set()


async def test_close_ends_every_consumers_iteration_after_what_was_sent(bus: EventBus) -> None:
    subs = [bus.subscribe([LogLine]), bus.subscribe([LogLine, RunStateChanged])]
    got: dict[int, list[Event]] = {0: [], 1: []}
    ended: dict[int, anyio.Event] = {0: anyio.Event(), 1: anyio.Event()}

    async def consume(i: int) -> None:
        async with subs[i].receive:
            async for event in subs[i].receive:
                got[i].append(event)
        ended[i].set()

    events: list[Event] = [log(bus, "a"), state(bus, RunState.QUEUED)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, 0)
            tg.start_soon(consume, 1)
            for event in events:
                await bus.publish(event)
            await anyio.wait_all_tasks_blocked()
            assert not ended[0].is_set() and not ended[1].is_set()
            await bus.close()
            await ended[0].wait()
            await ended[1].wait()
    assert got == {0: [events[0]], 1: events}


async def test_publishing_after_close_is_dropped_quietly(bus: EventBus) -> None:
    sub = bus.subscribe([LogLine])
    await bus.close()
    with anyio.fail_after(5):
        await bus.publish(log(bus, "late"))
    assert bus.publish_nowait(log(bus, "later")) == []
    assert sub.sent == 0
    with pytest.raises(anyio.EndOfStream):
        sub.receive.receive_nowait()
