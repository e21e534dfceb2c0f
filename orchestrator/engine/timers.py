"""Things a sweep does later: its time budget, ``termination.ttl`` removals. They run in the
sweep's background task group and are cancelled when the sweep ends, so none outlives it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

__all__ = ["Timers"]


class Timers:
    """Delayed actions of one sweep, started in ``group``; :meth:`cancel` drops them all."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self.group = group
        self._scopes: list[anyio.CancelScope] = []

    def after(self, seconds: float, action: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Call ``action(*args)`` in ``seconds`` unless the sweep ends first."""
        scope = anyio.CancelScope()
        self._scopes.append(scope)

        async def wait() -> None:
            with scope:
                await anyio.sleep(seconds)
                await action(*args)

        self.group.start_soon(wait)

    def remove_later(self, journal: Journal, layout: RunLayout, ttl: float) -> None:
        """``termination.ttl``: the run's working files go after ``ttl`` seconds; the journal
        keeps its entry. The pending removal is journaled, so it survives the process."""
        journal.add_cleanup(layout.run_uuid, str(layout.artifacts), time.time() + ttl)

        async def remove() -> None:
            await anyio.to_thread.run_sync(shutil.rmtree, layout.artifacts, True)
            journal.cleanup_done(layout.run_uuid)

        self.after(ttl, remove)

    def cancel(self) -> None:
        for scope in self._scopes:
            scope.cancel()
