"""A search plugin for tests: three configurations, then two around the best one, then done.

Installed through an entry point like a third-party package (``orchestrator.searchers``), so
the engine's whole path is exercised: suggestions, WAIT while a round runs, observations,
journaled places, restore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.plugin import DONE, WAIT, Done, Observation, Past, Suggestion, Wait, objective


class Ladder:
    def __init__(self, matrix: Any, dimensions: dict[str, Any], seed: int) -> None:
        self.metric = matrix.metric.name if getattr(matrix, "metric", None) else "loss"
        self.issued: dict[int, float] = {}
        self.results: dict[int, float | None] = {}
        self.rounds: list[list[float]] = [[1.0, 2.5, 4.0]]

    @property
    def total(self) -> int | None:
        return 5

    async def suggest(self, index: int) -> Suggestion | Wait | Done:
        if len(self.issued) < 3:
            x = self.rounds[0][len(self.issued)]
        elif len(self.issued) < 5:
            if len(self.results) < 3:
                return WAIT
            scored = [
                (v, self.issued[i]) for i, v in self.results.items() if i < 3 and v is not None
            ]
            best = min(scored)[1]
            x = best - 0.5 if len(self.issued) == 3 else best + 0.5
        else:
            return DONE
        place = {"round": 0 if len(self.issued) < 3 else 1}
        self.issued[index] = x
        return Suggestion({"x": x}, place)

    def observe(self, index: int, observation: Observation) -> None:
        self.results[index] = objective(observation, self.metric)

    def restore(self, history: Sequence[Past]) -> None:
        for past in history:
            self.issued[past.index] = past.suggestion.params["x"]
            if past.observation is not None:
                self.observe(past.index, past.observation)


def factory(matrix: Any, dimensions: dict[str, Any], seed: int) -> Ladder:
    return Ladder(matrix, dimensions, seed)
