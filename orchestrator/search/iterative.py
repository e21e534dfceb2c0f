"""Iterative search (``kind: iterative``): the user's own tuner decides each iteration's runs.

As in Polyaxon, iteration ``i`` runs the configurations the tuner component suggested for it,
and the tuner runs again, as a process, once every run of the iteration has ended: it is given
``matrix`` (the matrix as a dict), ``iteration`` (the next one), and the ``configs`` of every
run that succeeded so far with their ``metrics`` (last reported values) and ``outputs``; its
``suggestions`` output (a list of ``{matrix key: value}``) is the next iteration. The first
iteration's suggestions come from the tuner too, run with no configs yet (Polyaxon starts
every tuned kind by running its tuner at iteration 0). ``maxIterations`` iterations in all
(0 … maxIterations-1), as Polyaxon's docs say; an empty list of suggestions ends the search
early (Polyaxon fails the pipeline instead: here a tuner may say it is done).

The tuner runs inside :meth:`IterativeSearcher.suggest`, awaited, when the iteration is
complete: the engine asks again only after an observation, and none is due until the tuner
answers. Its failure, timeout or a malformed answer raises :class:`SearchError` (one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.exceptions import SearchError, SpecError
from orchestrator.search.base import DONE, WAIT, Done, Observation, Past, Suggestion, Wait
from orchestrator.search.tuner_process import DEFAULT_TIMEOUT_S, TunerRequest, TunerRunner
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension

__all__ = ["IterativeSearcher"]


@dataclass(frozen=True, slots=True)
class _Result:
    """A run that ended, as the tuner is told of it."""

    index: int
    params: dict[str, Any]
    observation: Observation


class IterativeSearcher:
    """Runs each iteration's suggestions, then asks the tuner for the next iteration."""

    def __init__(
        self,
        matrix: m.Iterative,
        dimensions: Mapping[str, Dimension],
        seed: int | None,
        *,
        tuner: TunerRunner | None = None,
        work_dir: Path | None = None,
        source: str = "polyaxonfile",
        base_dir: Path | None = None,
        inputs: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``tuner``: the runner of the tuner component; without it one is built from
        ``matrix.tuner`` (resolved against ``base_dir``, the polyaxonfile's folder, named
        ``source`` in errors) to work in ``work_dir/tuner``. ``inputs``: the names of the
        component's inputs, which a suggestion may set besides the matrix's params (none
        known and no params: any key is taken, as Polyaxon takes it)."""
        if matrix.max_iterations < 1:
            raise SpecError(
                f"expected a positive integer, got {matrix.max_iterations}",
                field="matrix.maxIterations",
                file=source,
            )
        if tuner is None:
            if work_dir is None:
                raise TypeError("IterativeSearcher needs a tuner or a work_dir")
            tuner = TunerRunner.for_matrix(
                matrix,
                source=source,
                base_dir=base_dir if base_dir is not None else Path.cwd(),
                work_dir=work_dir / "tuner",
                environ=environ,
                timeout=timeout,
            )
        self.tuner = tuner
        self.max_iterations = matrix.max_iterations
        self.matrix: dict[str, Any] = msgspec.to_builtins(matrix)
        if seed is not None:
            self.matrix.setdefault("seed", seed)  # a seed drawn for the sweep, so it replays
        self.keys: frozenset[str] | None = (
            frozenset(dimensions) | frozenset(inputs) if dimensions or inputs else None
        )
        #: The iteration being run (-1: the tuner has not answered yet).
        self.iteration = -1
        #: Its suggestions not handed out yet.
        self.queue: list[dict[str, Any]] = []
        #: Its runs still going, by index.
        self.pending: dict[int, dict[str, Any]] = {}
        #: Every configuration suggested, by index (an observation looks its params up).
        self.params: dict[int, dict[str, Any]] = {}
        self.results: list[_Result] = []
        self.done = False

    @property
    def total(self) -> int | None:
        return None

    async def suggest(self, index: int) -> Suggestion | Wait | Done:
        if self.done:
            return DONE
        if not self.queue:
            if self.pending:
                return WAIT
            if self.iteration + 1 >= self.max_iterations:
                self.done = True
                return DONE
            await self._next_iteration()
            if not self.queue:
                self.done = True
                return DONE
        params = self.queue.pop(0)
        self.pending[index] = self.params[index] = params
        return Suggestion(params=dict(params), place={"iteration": self.iteration})

    def observe(self, index: int, observation: Observation) -> None:
        self.pending.pop(index, None)
        params = self.params.get(index)
        if params is not None:
            self.results.append(_Result(index, params, observation))

    def restore(self, history: Sequence[Past]) -> None:
        """Back to the iteration of the last suggestion: its runs that ended are results, the
        others pending (the engine runs them again and observes them), and the rest of the
        tuner's answer for it (``suggestions.json`` in its folder) is still to hand out."""
        current: list[dict[str, Any]] = []
        for past in history:
            params = dict(past.suggestion.params)
            self.params[past.index] = params
            iteration = past.suggestion.place.get("iteration")
            if isinstance(iteration, int) and iteration > self.iteration:
                self.iteration, current = iteration, []
            if past.observation is not None:
                self.results.append(_Result(past.index, params, past.observation))
            if iteration == self.iteration:
                current.append(params)
                if past.observation is None:
                    self.pending[past.index] = params
        if self.iteration >= 0:
            answer = self.tuner.recorded(self.iteration)
            with contextlib.suppress(SearchError):  # unreadable: the iteration is what ran
                self.queue = _not_yet_suggested(self._checked(answer), current)

    async def _next_iteration(self) -> None:
        """Run the tuner for the next iteration and queue its suggestions."""
        iteration = self.iteration + 1
        succeeded = sorted(
            (r for r in self.results if r.observation.succeeded), key=lambda r: r.index
        )
        request = TunerRequest(
            iteration=iteration,
            matrix=self.matrix,
            configs=[dict(r.params) for r in succeeded],
            metrics=[dict(r.observation.metrics) for r in succeeded],
            outputs=[dict(r.observation.outputs) for r in succeeded],
        )
        outputs = await self.tuner.run(request)
        if "suggestions" not in outputs:
            raise SearchError(
                f"tuner {self.tuner.name!r} (iteration {iteration}): printed no suggestions "
                "(call orchestrator.tracking.log_outputs(suggestions=[...]))"
            )
        self.queue = self._checked(outputs["suggestions"], iteration)
        self.iteration = iteration

    def _checked(self, answer: Any, iteration: int | None = None) -> list[dict[str, Any]]:
        """The tuner's suggestions, each a dict of known keys; SearchError otherwise."""
        shown = self.iteration if iteration is None else iteration
        where = f"tuner {self.tuner.name!r} (iteration {shown})"
        if not isinstance(answer, list):
            raise SearchError(f"{where}: suggestions must be a list of dicts, got {_shown(answer)}")
        for position, item in enumerate(answer):
            if not isinstance(item, dict):
                raise SearchError(
                    f"{where}: suggestions[{position}] must be a dict of matrix keys to values, "
                    f"got {_shown(item)}"
                )
            unknown = sorted(str(k) for k in item if self.keys is not None and k not in self.keys)
            if unknown:
                known = ", ".join(sorted(self.keys or ()))
                raise SearchError(
                    f"{where}: suggestions[{position}] sets {unknown[0]!r}, which is neither a "
                    f"matrix param nor an input (expected one of: {known})"
                )
        return [dict(item) for item in answer]


def _not_yet_suggested(
    answer: list[dict[str, Any]], suggested: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``answer`` less one entry for each configuration already suggested, in order."""
    left = list(suggested)
    rest: list[dict[str, Any]] = []
    for item in answer:
        if item in left:
            left.remove(item)
        else:
            rest.append(item)
    return rest


def _shown(value: Any) -> str:
    """A value in an error message: its type and a short, one-line repr."""
    text = " ".join(repr(value).split())
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{type(value).__name__} {text}"
