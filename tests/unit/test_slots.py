"""Shared run slots: by priority, then first come, first served; cancellation is clean."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.engine.slots import PrioritySlots

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_freed_slots_go_to_the_highest_priority_then_the_earliest() -> None:
    slots = PrioritySlots(1)
    await slots.acquire()
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await slots.acquire(priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for name, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5)):
            tg.start_soon(wait, name, priority)
            await anyio.wait_all_tasks_blocked()
        assert slots.waiting == 4
        for _ in range(4):
            slots.release()
            await anyio.wait_all_tasks_blocked()
    assert order == ["b", "d", "a", "c"]
    assert slots.used == 1
    slots.release()
    assert slots.used == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    slots = PrioritySlots(1)
    await slots.acquire()
    got: list[str] = []

    async def wait(name: str) -> None:
        await slots.acquire(1)
        got.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "cancelled")
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "next")
        await anyio.wait_all_tasks_blocked()
        slots.release()
    assert got == ["next"]


async def test_a_caller_cancelled_on_the_fast_path_keeps_no_slot() -> None:
    """A run task cancelled right as it asks for a free slot must not keep it: the daemon's
    ``--max-runs`` would shrink by one for good each time."""
    slots = PrioritySlots(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await slots.acquire()
    assert slots.used == 0
    await slots.acquire()  # the slot is still there for the next one
    assert slots.used == 1
