"""A pipeline node's run slots inside a daemon: one of the pipeline's and one of the daemon's."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.engine.dag import _NodeSlots
from orchestrator.engine.slots import PrioritySlots

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_run_holds_one_of_each_and_gives_both_back() -> None:
    own, daemon = PrioritySlots(2), PrioritySlots(1)
    slots = _NodeSlots(own, daemon)
    await slots.acquire()
    assert (own.used, daemon.used) == (1, 1)
    slots.release()
    assert (own.used, daemon.used) == (0, 0)


async def test_waiting_on_the_daemon_then_cancelled_gives_the_pipelines_slot_back() -> None:
    own, daemon = PrioritySlots(1), PrioritySlots(1)
    await daemon.acquire()  # another sweep holds the daemon's only slot
    slots = _NodeSlots(own, daemon)
    async with anyio.create_task_group() as tg:
        tg.start_soon(slots.acquire)
        await anyio.wait_all_tasks_blocked()
        assert (own.used, slots.waiting) == (1, 1), (
            "the pipeline's slot taken, the daemon's awaited"
        )
        tg.cancel_scope.cancel()
    assert own.used == 0 and daemon.waiting == 0
    daemon.release()
    await slots.acquire()  # both free again
    assert (own.used, daemon.used) == (1, 1)
