"""Where a run ran when it ran off this machine (a Dask worker), for ``show`` and the API.

One place for the shape both use: ``{"worker": ADDRESS, "host": NAME}`` in ``show --json``
and ``GET /api/v1/runs/RUN`` (null for a run of this machine: local runs journal nothing), and
the ``ran on`` row of ``show RUN``.
"""

from __future__ import annotations

from typing import Any

from orchestrator.store.journal import Journal

__all__ = ["placement_of", "placement_row"]


def placement_of(journal: Journal, run_id: str) -> dict[str, str | None] | None:
    """The run's latest attempt's worker and host; None for a run of this machine."""
    found = journal.placements_of([run_id]).get(run_id)
    if found is None:
        return None
    worker, host = found
    return {"worker": worker, "host": host}


def placement_row(placement: dict[str, Any] | None) -> list[str] | None:
    """``show RUN``'s row: ``ran on  HOST (tcp://...)``; None where it ran here."""
    if not placement:
        return None
    worker = str(placement.get("worker"))
    host = placement.get("host")
    return ["ran on", f"{host} ({worker})" if host else worker]
