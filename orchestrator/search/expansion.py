"""Grid, random and mapping as a searcher: their runs are known up front (the lazy
expansion), so they never wait and ignore results; an open mapping (the daemon's ask/tell)
then waits for the entries added while the sweep runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from orchestrator.search.base import DONE, Done, Observation, Past, Suggestion

__all__ = ["ExpansionSearcher"]


class ExpansionSearcher:
    """Suggests the expansion's configurations in matrix order, then ``more()``'s until it
    says None (a closed open mapping)."""

    def __init__(
        self,
        points: Iterator[dict[str, Any]],
        total: int,
        more: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self._points = points
        self._total = total
        self._more = more

    @property
    def total(self) -> int | None:
        return self._total

    async def suggest(self, index: int) -> Suggestion | Done:
        point = next(self._points, None)
        if point is None and self._more is not None:
            point = await self._more()
        return DONE if point is None else Suggestion(point)

    def observe(self, index: int, observation: Observation) -> None:
        """Results change nothing: every configuration is known already."""

    def restore(self, history: Sequence[Past]) -> None:
        """Nothing to rebuild: a resumed sweep walks the expansion again and the engine skips
        the configurations that succeeded."""
