"""What bayes, tpe and hyperopt share: the bookkeeping around a model that proposes one
configuration at a time, told every result as it comes (no batch barrier).

A subclass proposes in a worker thread (:meth:`ModelSearcher._propose`: fitting a model takes
long enough to stall the event loop) and learns results in :meth:`ModelSearcher._learn`.
Runs still going are *pending*: each library's constant liar sees them as the worst result
so far, so eight free slots get eight different configurations.
"""

from __future__ import annotations

import abc
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import anyio.to_thread

from orchestrator.search.base import (
    DONE,
    WAIT,
    Done,
    Observation,
    Past,
    Suggestion,
    Wait,
    objective,
)
from orchestrator.search.space import derive_seed, freeze
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension, Discrete

__all__ = ["ATTEMPTS", "ModelSearcher"]

#: Draws a searcher makes for a configuration not already run before it looks for one at
#: random (a small discrete space may have none left: then it repeats one).
ATTEMPTS = 16
#: Discrete spaces up to this size are listed to find the configurations left.
ENUMERABLE = 100_000

#: What a proposal is: a configuration and where it sits, or WAIT.
Proposal = tuple[dict[str, Any], dict[str, Any]] | Wait


class ModelSearcher(abc.ABC):
    """Suggest, observe and restore for a searcher driven by a model."""

    #: Its suggestions depend on which results came in first: with a seed, the engine tells
    #: it results in run order (see :mod:`orchestrator.engine.feedback`).
    order_sensitive = True

    def __init__(
        self,
        metric: m.OptimizationMetric,
        dimensions: Mapping[str, Dimension],
        seed: int,
        total: int | None,
    ) -> None:
        self._metric = metric.name
        # Polyaxon's managers minimize unless told ``maximize``.
        self._maximize = metric.optimization == "maximize"
        self._dimensions = dict(dimensions)
        self._seed = seed
        self._total = total
        #: Every suggestion made, by run index (set in the worker thread, so a suggest that was
        #: cancelled while the model worked hands the same configuration when asked again).
        self._made: dict[int, Suggestion] = {}
        self._seen: set[tuple[tuple[str, str], ...]] = set()
        #: Each ended run's objective value (None: it failed or reported no number).
        self._results: dict[int, float | None] = {}

    @property
    def total(self) -> int | None:
        return self._total

    def is_new(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` was never suggested before."""
        return freeze(params) not in self._seen

    def unseen(self, index: int) -> dict[str, Any] | None:
        """A random configuration never suggested (None: none found), for when the model
        only proposes repeats: every one left of a small discrete space is a candidate."""
        draws = random.Random(derive_seed(self._seed, index))
        dims = self._dimensions
        if all(isinstance(d, Discrete) for d in dims.values()):
            size = math.prod(len(d) for d in dims.values() if isinstance(d, Discrete))
            if size <= ENUMERABLE:
                keys, columns = list(dims), [d.values for d in dims.values()]  # type: ignore[union-attr]
                left = [
                    point
                    for values in itertools.product(*columns)
                    if self.is_new(point := dict(zip(keys, values, strict=True)))
                ]
                return draws.choice(left) if left else None
        for _ in range(ATTEMPTS * 4):
            params = {key: dim.sample(draws) for key, dim in dims.items()}
            if self.is_new(params):
                return params
        return None

    @property
    def pending(self) -> list[int]:
        """Runs suggested and not yet ended, in index order."""
        return [index for index in sorted(self._made) if index not in self._results]

    async def suggest(self, index: int) -> Suggestion | Wait | Done:
        if index in self._made:
            return self._made[index]
        if self._total is not None and len(self._made) >= self._total:
            return DONE
        return await anyio.to_thread.run_sync(self._suggest_now, index)

    def _suggest_now(self, index: int) -> Suggestion | Wait:
        proposal = self._propose(index)
        if isinstance(proposal, Wait):
            return WAIT
        params, place = proposal
        made = self._made[index] = Suggestion(params, place)
        self._seen.add(freeze(params))
        return made

    def observe(self, index: int, observation: Observation) -> None:
        if index not in self._made or index in self._results:
            return
        value = objective(observation, self._metric)
        self._results[index] = value
        self._learn(index, value, observation.state)

    def restore(self, history: Sequence[Past]) -> None:
        """Replay every journaled suggestion in index order, then every result."""
        for past in sorted(history, key=lambda p: p.index):
            self._made[past.index] = past.suggestion
            self._seen.add(freeze(past.suggestion.params))
            self._replay(past.index, past.suggestion.params)
        for past in history:
            if past.observation is not None:
                self.observe(past.index, past.observation)

    @abc.abstractmethod
    def _propose(self, index: int) -> Proposal:
        """The configuration for run ``index`` (runs in a worker thread)."""

    @abc.abstractmethod
    def _learn(self, index: int, value: float | None, state: str) -> None:
        """Run ``index`` ended with objective ``value`` (None: failed, stopped, no number)."""

    @abc.abstractmethod
    def _replay(self, index: int, params: Mapping[str, Any]) -> None:
        """Run ``index`` was suggested ``params`` before a crash: register it as pending."""
