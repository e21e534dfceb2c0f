"""``kind: hyperopt`` (Polyaxon 2.16): the ``hyperopt`` package's own ``tpe``, ``rand`` and
``anneal`` algorithms, driven ask/tell style over a ``Trials`` object (no ``fmin`` loop).

Each suggestion calls the algorithm's ``suggest`` for one new trial id (the run index) with
every result so far; a run still going stays in ``Trials`` as a new trial, which hyperopt's
``tpe`` and ``anneal`` read as an infinite loss (its own constant liar: "associate infinite
loss to new/running/failed jobs"). Runs: ``numRuns * (maxIterations + 1)``, as for ``tpe``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.search.modelbased import ATTEMPTS, Proposal
from orchestrator.search.space import (
    derive_seed,
    hyperopt_raw,
    hyperopt_space,
    hyperopt_value,
    load,
)
from orchestrator.search.tpe import IterationsSearcher
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension

__all__ = ["HyperoptSearcher"]


class HyperoptSearcher(IterationsSearcher):
    """One hyperopt algorithm (``tpe`` unless the file says ``rand`` or ``anneal``)."""

    def __init__(self, matrix: m.Hyperopt, dimensions: Mapping[str, Dimension], seed: int) -> None:
        super().__init__(matrix, dimensions, seed)
        hyperopt = load("hyperopt", "hyperopt", "hyperopt")
        # tpe.suggest logs every call at INFO.
        logging.getLogger("hyperopt").setLevel(logging.WARNING)
        self._hyperopt = hyperopt
        self._algorithm = getattr(hyperopt, matrix.algorithm or "tpe").suggest
        space = hyperopt_space(dimensions, hyperopt.hp)
        self._domain = hyperopt.Domain(lambda _: 0.0, space)
        self._trials = hyperopt.Trials()
        self._docs: dict[int, dict[str, Any]] = {}

    def _propose(self, index: int) -> Proposal:
        for attempt in range(ATTEMPTS):
            seed = derive_seed(self._seed, index * ATTEMPTS + attempt)
            docs = self._algorithm([index], self._domain, self._trials, seed)
            vals = docs[0]["misc"]["vals"]
            params = {k: hyperopt_value(dim, vals[k][0]) for k, dim in self._dimensions.items()}
            if self.is_new(params):
                self._insert(index, docs)
                return params, self.place(index)
        params = self.unseen(index) or params
        self._replay(index, params)
        return params, self.place(index)

    def _replay(self, index: int, params: Mapping[str, Any]) -> None:
        raws = {key: hyperopt_raw(dim, params.get(key)) for key, dim in self._dimensions.items()}
        known = {key: raw for key, raw in raws.items() if raw is not None}
        misc = {
            "tid": index,
            "cmd": self._domain.cmd,
            "workdir": self._domain.workdir,
            "idxs": {key: [index] for key in known},
            "vals": {key: [raw] for key, raw in known.items()},
        }
        new = {"status": "new"}
        self._insert(index, self._trials.new_trial_docs([index], [None], [new], [misc]))

    def _insert(self, index: int, docs: list[dict[str, Any]]) -> None:
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        # Trials keeps its own copy of each document: results are written there.
        self._docs[index] = next(d for d in reversed(self._trials.trials) if d["tid"] == index)

    def _learn(self, index: int, value: float | None, state: str) -> None:
        hyperopt = self._hyperopt
        doc = self._docs[index]
        doc["state"] = hyperopt.JOB_STATE_DONE
        if value is None:
            # As fmin records an objective that failed: no loss, read as infinite.
            doc["result"] = {"status": hyperopt.STATUS_FAIL}
        else:
            loss = -value if self._maximize else value
            doc["result"] = {"loss": loss, "status": hyperopt.STATUS_OK}
        self._trials.refresh()
