"""A stop reaches runs that wait for one of the daemon's shared run slots (``--max-runs``)
behind other sweeps' runs: they end ``stopped`` at once, holding no slot."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.events import RunStateChanged
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.states import RunState, SweepState
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from orchestrator.testing import FakeExecutor, FakeRun

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_runs_waiting_for_a_shared_slot_are_stopped_without_it(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1.1\nkind: operation\n"
        "matrix: {kind: mapping, values: [{n: 1}, {n: 2}]}\n"
        "component:\n  inputs: [{name: n, type: int}]\n"
        "  run: {kind: job, container: {command: [echo, '{{ n }}']}}\n"
    )
    slots = PrioritySlots(1)
    await slots.acquire()  # another sweep's run holds the only slot
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        controller = build_sweep(
            compile_plan(load_spec(spec), paths=run_paths(tmp_path)),
            SweepSettings(home=tmp_path, spec_path=str(spec), concurrency=2),
            journal=journal,
            executor=FakeExecutor(lambda job: FakeRun()),
            shared_slots=slots,
        )
        queued = anyio.Event()
        seen: list[str] = []
        subscription = controller.bus.subscribe([RunStateChanged])

        async def watch() -> None:
            async with subscription.receive:
                async for event in subscription.receive:
                    assert isinstance(event, RunStateChanged)
                    if event.state is RunState.QUEUED:
                        seen.append(event.run_id)
                        if len(seen) == 2:
                            queued.set()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)

                async def stop_when_queued() -> None:
                    await queued.wait()
                    await anyio.wait_all_tasks_blocked()
                    controller.request_stop("stopped by the test")

                tg.start_soon(stop_when_queued)
                result = await controller.run()
                await subscription.send.aclose()
    finally:
        journal.close()
    assert result.state is SweepState.STOPPED
    assert [run.state for run in result.runs] == [RunState.STOPPED] * 2
    assert slots.used == 1 and slots.waiting == 0  # only the other sweep's slot is held
