"""How run results reach a searcher: the moment each run ends, or in run order.

As runs end is the fastest: a suggestion uses every result there is. But a model-based
search (bayes, tpe, hyperopt) then suggests from whichever runs happened to end first, so the
same seed can give another sweep. With ``ordered``, results are told in run order and the
suggestion for run ``i`` sees exactly the results of runs ``0 .. i - lag`` (``lag``: the
sweep's concurrency; waiting for a straggler among them if need be): the same seed gives the
same runs, whatever the machine's timing.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from orchestrator.search.base import Observation, Past, Searcher

__all__ = ["Feedback"]


class Feedback:
    def __init__(self, searcher: Searcher, *, ordered: bool, lag: int) -> None:
        self.searcher = searcher
        self.ordered = ordered
        self.lag = max(lag, 1)
        #: Results not yet told (ordered), by run index.
        self._ended: dict[int, Observation] = {}
        #: Ordered: the index of the next result to tell.
        self._told = 0
        self._event = anyio.Event()

    def armed(self) -> anyio.Event:
        """An event set by the next result to come (taken before asking the searcher, so a
        run that ends while it thinks is not missed)."""
        self._event = anyio.Event()
        return self._event

    def ended(self, index: int, observation: Observation) -> None:
        if self.ordered and index >= self._told:
            self._ended[index] = observation
        else:
            self.searcher.observe(index, observation)
        self._event.set()

    def restored(self, history: Sequence[Past]) -> None:
        """A resumed search was told these results: tell later ones in order from there."""
        told = [past.index for past in history if past.observation is not None]
        self._told = max(told) + 1 if told else 0

    async def before(self, index: int) -> None:
        """Ordered: tell every result up to ``index - lag`` first (waiting for them)."""
        if self.ordered:
            while self._told <= index - self.lag:
                await self._tell_next()

    async def more(self, created: int, running: bool) -> bool:
        """The searcher waits for results: wait until one more is told (ordered: the next in
        run order). False when none can come (every run made so far is told or has ended)."""
        if self.ordered:
            if self._told >= created:
                return False
            await self._tell_next()
            return True
        if not running:
            return False
        await self._event.wait()
        return True

    async def _tell_next(self) -> None:
        while self._told not in self._ended:
            await self.armed().wait()
        self.searcher.observe(self._told, self._ended.pop(self._told))
        self._told += 1
