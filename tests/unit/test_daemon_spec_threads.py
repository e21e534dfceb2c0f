"""A submission's spec is loaded and checked in worker threads of its own: sweeps whose
threads all wait elsewhere (a burst waiting for a shared look at their code) never make a
new submission wait for a thread."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from orchestrator.daemon.specs import Compile, SpecMemo
from orchestrator.spec import Plan
from orchestrator.store.layout import run_paths

pytestmark = pytest.mark.anyio

SPEC = "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [/bin/true]}}\n"
#: Seconds a load and check gets before the test says it waited for a thread (it takes
#: milliseconds; generous for a loaded machine).
LIMIT_S = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Holder:
    """Stands for a sweep holding one of anyio's shared worker threads."""


async def test_a_submission_is_checked_while_every_shared_worker_thread_is_taken(
    tmp_path: Path,
) -> None:
    shared = anyio.to_thread.current_default_thread_limiter()
    holders = [Holder() for _ in range(int(shared.total_tokens))]
    for holder in holders:
        await shared.acquire_on_behalf_of(holder)
    try:
        assert shared.available_tokens == 0
        how = Compile({}, run_paths(tmp_path / "home"), name=None, open_mapping=False)
        with anyio.fail_after(LIMIT_S):
            _, plan = await SpecMemo().prepare(SPEC, "<submitted>", tmp_path, how)
        assert isinstance(plan, Plan)
    finally:
        for holder in holders:
            shared.release_on_behalf_of(holder)
