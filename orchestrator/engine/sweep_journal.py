"""A sweep's own record in the journal: its start queued, committed before anyone is told it
is accepted, and the news of a lost write carried back to the event loop.

Kept apart from the controller because it is about durability, not about driving runs: the
daemon awaits :func:`commit_start` before it answers 201, and the controller before any run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread
import anyio.lowlevel

from orchestrator.exceptions import StoreError, UnavailableError
from orchestrator.spec.resolve import Plan
from orchestrator.store.journal import Journal

if TYPE_CHECKING:
    from orchestrator.engine.build import SweepSettings

__all__ = ["commit_start", "queue_start", "watch_losses"]


def queue_start(
    journal: Journal,
    sweep_id: str,
    plan: Plan,
    settings: SweepSettings,
    *,
    name: str | None,
    resumed: bool,
    open_mapping: bool,
    mark_running: Callable[[], None],
    total: int,
) -> None:
    """Queue the sweep's start as one record: a new sweep ``created`` (with its open mapping,
    if any); a resumed one owned by this process again, and ``mark_running`` (its checked
    move back to running) in the same record."""
    journal.forget(sweep_id)  # a resumed sweep's earlier losses are not this run's
    with journal.together(sweep_id):
        if resumed:
            journal.reopen_sweep(
                sweep_id,
                pid=os.getpid(),
                total=total,
                concurrency=settings.concurrency,
                component_hash=plan.component_hash,
                via_daemon=settings.by_daemon or None,
            )
            mark_running()
            return
        expansion = plan.expansion
        journal.add_sweep(
            sweep_id,
            name=name,
            description=settings.description or plan.spec.operation.description,
            tags=list(settings.tags) or list(plan.spec.operation.tags or []),
            spec_path=settings.spec_path,
            kind=expansion.kind if expansion is not None else "single",
            total=total,
            concurrency=settings.concurrency,
            pid=os.getpid(),
            seed=expansion.seed if expansion is not None else None,
            overrides=dict(settings.overrides),
            component_hash=plan.component_hash,
            daemon_spec=settings.spec_text,
            parent_id=settings.parent_id,
            node=settings.node,
        )
        if open_mapping:
            journal.open_mapping(sweep_id)


async def commit_start(journal: Journal, sweep_id: str, refused: str) -> None:
    """Commit what :func:`queue_start` queued. UnavailableError (``sweep ID <refused>:
    journal write failed: ...``) when it cannot be written: then nothing of it may run."""
    try:
        await journal.commit(sweep_id)
    except StoreError as exc:
        journal.forget(sweep_id)
        raise UnavailableError(f"sweep {sweep_id[:12]} {refused}: {exc}") from None


def watch_losses(journal: Journal, sweep_id: str, on_lost: Callable[[str], None]) -> None:
    """Have the journal's writer call ``on_lost(error)``, on this event loop, when a write of
    the sweep is lost. The writer must never wait on the loop, so a short-lived thread of its
    own hands the news over."""
    token = anyio.lowlevel.current_token()

    def hand_over(error: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has ended: nobody to tell
            anyio.from_thread.run_sync(on_lost, error, token=token)

    def lost(error: str) -> None:
        threading.Thread(target=hand_over, args=(error,), daemon=True).start()

    journal.watch(sweep_id, lost)
