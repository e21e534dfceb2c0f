"""Hyperband (``kind: hyperband``): successive halving in brackets, with Polyaxon's numbers.

Polyaxon's schedule (``_flow/matrix/hyperband.py``): ``s_max = int(log(R)/log(eta))``,
``B = (s_max+1)·R``; iteration ``i`` runs bracket ``s = s_max - i``: ``ceil(B/R·eta^s/(s+1))``
random configurations at resource ``R·eta^-s``, then rung ``k+1`` keeps the best
``int(n·eta^-k/eta)`` of rung ``k`` at ``eta`` times the resource, up to ``R``.

Unlike Polyaxon, brackets do not run one after another: they are independent, so while a rung
waits for its last runs the next bracket's first configurations fill the free slots, and
``concurrency`` holds in every iteration. A rung still waits for all of its own runs before
promoting (that is what keeps "the best n" Polyaxon's).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.exceptions import SpecError
from orchestrator.search.base import DONE, WAIT, Done, Observation, Past, Suggestion, Wait
from orchestrator.search.base import objective as objective_of
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension
from orchestrator.spec.matrix import discrete_size, freeze

__all__ = [
    "MAX_RUNS",
    "Bracket",
    "HyperbandSearcher",
    "Rung",
    "cast_resource",
    "hyperband_schedule",
]

#: Largest number of runs one hyperband search may make (a typo in ``eta`` must not make a
#: schedule of 10^9 runs).
MAX_RUNS = 100_000


@dataclass(frozen=True, slots=True)
class Rung:
    """One round of successive halving: how many runs, each given how much resource."""

    num_runs: int
    resource: int | float


@dataclass(frozen=True, slots=True)
class Bracket:
    """The runs of one hyperband iteration (Polyaxon's ``iteration``/``bracket``)."""

    iteration: int
    bracket: int
    rungs: tuple[Rung, ...]

    @property
    def num_runs(self) -> int:
        return sum(rung.num_runs for rung in self.rungs)


def cast_resource(value: float, kind: Literal["int", "float"] | None) -> int | float:
    """Polyaxon's ``V1OptimizationResource.cast_value``: ``int()`` truncates (R=50, eta=1.5
    gives 49.99999999999999, hence 49, exactly as in Polyaxon); no type keeps the float."""
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def _check(max_iterations: int, eta: float) -> int:
    """Validate the two numbers the schedule is made of; return ``s_max``."""
    if (
        isinstance(max_iterations, bool)
        or not isinstance(max_iterations, int)
        or max_iterations < 1
    ):
        raise SpecError(
            f"expected a positive integer, got {max_iterations!r}", field="matrix.maxIterations"
        )
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not 1 < eta < math.inf:
        raise SpecError(f"expected a number greater than 1, got {eta!r}", field="matrix.eta")
    s_max = int(math.log(max_iterations) / math.log(eta))
    if s_max >= MAX_RUNS:
        _too_many(f"more than {MAX_RUNS}")
    return s_max


def _too_many(count: str) -> None:
    raise SpecError(
        f"hyperband would make {count} runs; at most {MAX_RUNS} are supported "
        "(lower maxIterations or raise eta)",
        field="matrix.maxIterations",
    )


def _bracket(
    iteration: int,
    s_max: int,
    max_iterations: int,
    eta: float,
    resource_type: Literal["int", "float"] | None,
    first: int | None = None,
) -> Bracket:
    """Iteration ``iteration``'s rungs, each number computed as Polyaxon does (same float
    operations in the same order). ``first`` caps the first rung (a small discrete space);
    the halvings are then taken from what it holds."""
    bracket = s_max - iteration
    budget = (s_max + 1) * max_iterations  # Polyaxon's B
    n = math.ceil((budget / max_iterations) * (eta**bracket) / (bracket + 1))
    if first is not None:
        n = min(n, first)
    base = max_iterations * (eta ** (-bracket))
    rungs: list[Rung] = []
    for k in range(bracket + 1):
        size = n if k == 0 else int(n * (eta ** -(k - 1)) / eta)
        if size <= 0:
            break
        rungs.append(Rung(size, cast_resource(base * eta**k, resource_type)))
    return Bracket(iteration, bracket, tuple(rungs))


def hyperband_schedule(
    max_iterations: int,
    eta: float,
    resource_type: Literal["int", "float"] | None = None,
    space: int | None = None,
) -> list[Bracket]:
    """Every bracket a hyperband search runs, in iteration order, with each rung's number of
    runs and resource (cast to ``resource_type``); ``space``: the number of distinct
    configurations when every param is discrete (a bracket never draws more). What ``plan``
    prints; raises :class:`SpecError` for numbers the algorithm cannot use."""
    eta = float(eta) if isinstance(eta, int) and not isinstance(eta, bool) else eta
    s_max = _check(max_iterations, eta)
    brackets: list[Bracket] = []
    total = 0
    for iteration in range(s_max + 1):
        bracket = _bracket(iteration, s_max, max_iterations, eta, resource_type, space)
        total += bracket.num_runs
        if total > MAX_RUNS:
            _too_many(f"more than {MAX_RUNS}")
        brackets.append(bracket)
    return brackets


# ----------------------------------------------------------------------------- the searcher
@dataclass(eq=False)
class _Member:
    """A suggested run: its configuration (params without the resource) and result."""

    index: int
    config: dict[str, Any]
    observed: bool = False
    value: float | None = None


@dataclass(eq=False)
class _Candidate:
    """A configuration waiting to be run in a rung; ``source``: the run it was promoted from."""

    config: dict[str, Any]
    source: int | None = None


@dataclass(eq=False)
class _BracketState:
    plan: Bracket
    #: Per rung: what is left to suggest; None until the rung opens (its previous rung has
    #: been observed in full).
    todo: list[list[_Candidate] | None]
    issued: list[list[_Member]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.issued = [[] for _ in self.plan.rungs]

    def closed(self, rung: int) -> bool:
        todo = self.todo[rung]
        return todo is not None and not todo and all(m.observed for m in self.issued[rung])

    def expected(self) -> int:
        """Runs this bracket will make, as far as known now (a rung whose predecessor had
        failures promotes fewer than planned)."""
        total, previous = 0, math.inf
        for rung, plan in enumerate(self.plan.rungs):
            todo = self.todo[rung]
            size = (
                len(self.issued[rung]) + len(todo)
                if todo is not None
                else int(min(plan.num_runs, previous))
            )
            total += size
            previous = size
        return total


def _drop_issued(candidates: list[_Candidate], issued: Sequence[_Member]) -> list[_Candidate]:
    """``candidates`` less those already run (matched by configuration; each issued run that
    matches none takes the place of the first one left, so the rung keeps its size)."""
    wanted = Counter(freeze(member.config) for member in issued)
    left: list[_Candidate] = []
    for candidate in candidates:
        key = freeze(candidate.config)
        if wanted[key] > 0:
            wanted[key] -= 1
        else:
            left.append(candidate)
    return left[sum(wanted.values()) :]


def _required(
    matrix: m.Hyperband,
) -> tuple[int, float, m.OptimizationResource, m.OptimizationMetric]:
    """The four fields the algorithm needs (optional in Polyaxon's schema)."""
    max_iterations, eta = matrix.max_iterations, matrix.eta
    resource, metric = matrix.resource, matrix.metric
    for value, camel in (
        (max_iterations, "maxIterations"),
        (eta, "eta"),
        (resource, "resource"),
        (metric, "metric"),
    ):
        if value is None:
            raise SpecError("required by hyperband", field=f"matrix.{camel}")
    assert max_iterations is not None and eta is not None
    assert resource is not None and metric is not None
    # Polyaxon's eta is a float (3 becomes 3.0): an untyped resource is then 81.0, not 81.
    return max_iterations, float(eta), resource, metric


class HyperbandSearcher:
    """Polyaxon's hyperband, its brackets overlapping: see the module docstring."""

    def __init__(self, matrix: m.Hyperband, dimensions: dict[str, Dimension], seed: int) -> None:
        max_iterations, eta, resource, metric = _required(matrix)
        if resource.name in dimensions:
            raise SpecError(
                f"{resource.name!r} is the resource, hyperband sets it; remove it from "
                "matrix.params",
                field="matrix.resource.name",
            )
        self._resource = resource.name
        self._metric = metric.name
        # Polyaxon: V1Optimization.maximize(None) is False, so minimize is the default.
        self._maximize = metric.optimization == "maximize"
        self._resume = bool(matrix.resume)
        self._dimensions = dict(dimensions)
        self._seed = seed
        space = discrete_size(self._dimensions)
        schedule = hyperband_schedule(max_iterations, eta, resource.type, space)
        self._brackets: list[_BracketState] = []
        for plan in schedule:
            configs = self._sample(plan)
            if plan.rungs and len(configs) < plan.rungs[0].num_runs:
                # A space the sampler could not fill (a pchoice value of probability 0).
                s_max = len(schedule) - 1
                plan = _bracket(
                    plan.iteration, s_max, max_iterations, eta, resource.type, len(configs)
                )
            todo: list[list[_Candidate] | None] = [None] * len(plan.rungs)
            if plan.rungs:
                todo[0] = [_Candidate(c) for c in configs]
            self._brackets.append(_BracketState(plan, todo))
        self._runs: dict[int, tuple[_BracketState, int, _Member]] = {}

    def _sample(self, plan: Bracket) -> list[dict[str, Any]]:
        """The bracket's first-rung configurations: drawn from a generator seeded by the seed
        and the iteration (so a resumed search draws the same ones), no duplicates."""
        wanted = plan.rungs[0].num_runs if plan.rungs else 0
        rng = random.Random(f"hyperband/{self._seed}/{plan.iteration}")
        configs: list[dict[str, Any]] = []
        seen: set[Any] = set()
        attempts = max(1000, 100 * wanted)
        while len(configs) < wanted and attempts > 0:
            attempts -= 1
            config = {k: d.sample(rng) for k, d in self._dimensions.items()}
            key = freeze(config)
            if key not in seen:
                seen.add(key)
                configs.append(config)
        return configs

    @property
    def total(self) -> int:
        """The runs the schedule makes; smaller once a rung had runs with no value to
        promote (failed, stopped, no metric)."""
        return sum(b.expected() for b in self._brackets)

    async def suggest(self, index: int) -> Suggestion | Wait | Done:
        # Promoted configurations first (the deepest work), then the earliest bracket's
        # first rung: a later bracket starts as soon as the earlier ones have nothing to run.
        for bracket in self._brackets:
            for rung in range(len(bracket.todo) - 1, 0, -1):
                if bracket.todo[rung]:
                    return self._issue(index, bracket, rung)
        for bracket in self._brackets:
            if bracket.todo and bracket.todo[0]:
                return self._issue(index, bracket, 0)
        if any(not member.observed for _, _, member in self._runs.values()):
            return WAIT
        return DONE

    def _issue(self, index: int, bracket: _BracketState, rung: int) -> Suggestion:
        todo = bracket.todo[rung]
        assert todo
        candidate = todo.pop(0)
        self._record(index, bracket, rung, candidate.config)
        return self._suggestion(bracket, rung, candidate.config, candidate.source)

    def _record(
        self, index: int, bracket: _BracketState, rung: int, config: dict[str, Any]
    ) -> _Member:
        if index in self._runs:
            raise ValueError(f"run {index} was already suggested")
        member = _Member(index, config)
        bracket.issued[rung].append(member)
        self._runs[index] = (bracket, rung, member)
        return member

    def _suggestion(
        self, bracket: _BracketState, rung: int, config: dict[str, Any], source: int | None
    ) -> Suggestion:
        # Polyaxon's order: the resource first, then the sampled params.
        params = {self._resource: bracket.plan.rungs[rung].resource, **config}
        place = {"iteration": bracket.plan.iteration, "bracket": bracket.plan.bracket, "rung": rung}
        return Suggestion(params, place, source if self._resume and rung else None)

    def observe(self, index: int, observation: Observation) -> None:
        try:
            bracket, _, member = self._runs[index]
        except KeyError:
            raise ValueError(f"run {index} was not suggested by this search") from None
        member.observed = True
        member.value = objective_of(observation, self._metric)
        self._advance(bracket)

    def _advance(self, bracket: _BracketState) -> None:
        """Open each rung whose previous one has been observed in full: its best runs."""
        for rung in range(1, len(bracket.todo)):
            if bracket.todo[rung] is None and bracket.closed(rung - 1):
                bracket.todo[rung] = _drop_issued(
                    self._promote(bracket, rung), bracket.issued[rung]
                )

    def _promote(self, bracket: _BracketState, rung: int) -> list[_Candidate]:
        """Rung ``rung - 1``'s best ``n`` runs that have a value, best first; ties keep the
        run order (Polyaxon sorts stably)."""
        ranked = [(m.value, m) for m in bracket.issued[rung - 1] if m.value is not None]
        ranked.sort(key=lambda pair: pair[0], reverse=self._maximize)
        keep = bracket.plan.rungs[rung].num_runs
        return [_Candidate(m.config, m.index) for _, m in ranked[:keep]]

    def restore(self, history: Sequence[Past]) -> None:
        """Put every journaled run back in its bracket and rung, then its result; the rungs
        those results complete open with the same promotions as before the crash."""
        by_iteration = {b.plan.iteration: b for b in self._brackets}
        for past in history:
            bracket, rung = self._locate(past, by_iteration)
            config = {k: v for k, v in past.suggestion.params.items() if k != self._resource}
            member = self._record(past.index, bracket, rung, config)
            if past.observation is not None:
                member.observed = True
                member.value = objective_of(past.observation, self._metric)
        for bracket in self._brackets:
            first = bracket.todo[0] if bracket.todo else None
            if first is not None:  # only the first rungs are open before any result
                bracket.todo[0] = _drop_issued(first, bracket.issued[0])
            self._advance(bracket)

    @staticmethod
    def _locate(past: Past, by_iteration: dict[int, _BracketState]) -> tuple[_BracketState, int]:
        place = past.suggestion.place
        iteration, rung = place.get("iteration"), place.get("rung")
        bracket = by_iteration.get(iteration) if isinstance(iteration, int) else None
        if bracket is None or not isinstance(rung, int) or not 0 <= rung < len(bracket.todo):
            raise ValueError(
                f"journaled run {past.index} has no place in this hyperband schedule: {place!r}"
            )
        return bracket, rung
