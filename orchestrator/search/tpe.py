"""``kind: tpe`` (Polyaxon 2.18): Optuna's Tree-structured Parzen Estimator, through its
ask/tell API, with an in-memory study.

Polyaxon runs iterations of ``numRuns`` suggestions each, ``maxIterations`` more after the
first (its ``should_reschedule``: ``iteration < maxIterations``), so a sweep makes
``numRuns * (maxIterations + 1)`` runs; with no ``maxIterations`` Polyaxon never stops
rescheduling, and neither does this (``total`` is None: early stopping ends it). Here every
suggestion uses every result so far, and runs still going are Optuna's constant liar's
(``constant_liar=True``: a running trial counts as the worst value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.search.modelbased import ATTEMPTS, ModelSearcher, Proposal
from orchestrator.search.space import LIBRARY_KINDS, check_kinds, derive_seed, load, optuna_axes
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension
from orchestrator.spec.matrix import discrete_size, matrix_kind

__all__ = ["IterationsSearcher", "TpeSearcher", "iterations_total"]


def iterations_total(
    num_runs: int | None,
    max_iterations: int | None,
    kind: str,
    dimensions: Mapping[str, Dimension] | None = None,
) -> int | None:
    """Runs Polyaxon makes for ``numRuns`` per iteration and ``maxIterations`` more
    iterations after the first (None: it never stops), at most the size of a space whose
    every param is discrete (Polyaxon would go on suggesting configurations already run)."""
    if num_runs is None:
        raise SpecError(f"required by {kind}", field="matrix.numRuns")
    space = discrete_size(dict(dimensions)) if dimensions else None
    total = None if not max_iterations else num_runs * (max_iterations + 1)
    if space is not None:
        total = space if total is None else min(total, space)
    return total


class IterationsSearcher(ModelSearcher):
    """A search Polyaxon runs in iterations of ``numRuns`` (tpe, hyperopt): its total, the
    parameter kinds its library takes, and the iteration a run index falls in."""

    def __init__(
        self, matrix: m.Tpe | m.Hyperopt, dimensions: Mapping[str, Dimension], seed: int
    ) -> None:
        kind = matrix_kind(matrix)
        total = iterations_total(matrix.num_runs, matrix.max_iterations, kind, dimensions)
        check_kinds(dimensions, LIBRARY_KINDS, kind)
        super().__init__(matrix.metric, dimensions, seed, total)
        assert matrix.num_runs is not None
        self._num_runs = matrix.num_runs

    def place(self, index: int) -> dict[str, Any]:
        return {"iteration": index // self._num_runs}


class TpeSearcher(IterationsSearcher):
    """Optuna's TPE sampler, asked one configuration at a time."""

    def __init__(self, matrix: m.Tpe, dimensions: Mapping[str, Dimension], seed: int) -> None:
        super().__init__(matrix, dimensions, seed)
        optuna = load("optuna", "tpe", "optuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self._axes = optuna_axes(dimensions, optuna)
        self._distributions = {key: axis.distribution for key, axis in self._axes.items()}
        self._study = optuna.create_study(
            direction="maximize" if self._maximize else "minimize", sampler=self._sampler(0)
        )
        self._trials: dict[int, int] = {}

    def _sampler(self, index: int) -> Any:
        # A sampler per suggestion, seeded by its index: see ``derive_seed``.
        return self._optuna.samplers.TPESampler(
            seed=derive_seed(self._seed, index), constant_liar=True
        )

    def _propose(self, index: int) -> Proposal:
        place = self.place(index)
        for attempt in range(ATTEMPTS):
            self._study.sampler = self._sampler(index * ATTEMPTS + attempt)
            trial = self._study.ask(self._distributions)
            params = {key: axis.value(trial.params[key]) for key, axis in self._axes.items()}
            if self.is_new(params):
                self._trials[index] = trial.number
                return params, place
            # A repeat: failed trials are invisible to the sampler, so this one leaves no trace.
            self._study.tell(trial.number, state=self._optuna.trial.TrialState.FAIL)
        params = self.unseen(index) or params
        self._replay(index, params)
        return params, place

    def _replay(self, index: int, params: Mapping[str, Any]) -> None:
        raws = {key: axis.raw(params.get(key)) for key, axis in self._axes.items()}
        self._study.enqueue_trial({k: v for k, v in raws.items() if v is not None})
        self._trials[index] = self._study.ask(self._distributions).number

    def _learn(self, index: int, value: float | None, state: str) -> None:
        states = self._optuna.trial.TrialState
        number = self._trials[index]
        if value is not None:
            self._study.tell(number, value)
        else:
            # Optuna's own reading: an early-stopped trial is pruned, anything else failed.
            self._study.tell(number, state=states.PRUNED if state == "stopped" else states.FAIL)
