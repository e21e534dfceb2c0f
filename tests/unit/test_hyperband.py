"""Hyperband: Polyaxon's bracket sizes and resources, successive halving on the observed
metric, brackets that overlap instead of waiting for each other, and crash recovery.

Driven through the searcher interface only (suggest/observe/restore, under anyio.run), with a
synthetic objective whose value for each configuration is known.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.search.base import DONE, WAIT, Observation, Past, Searcher, Suggestion
from orchestrator.search.hyperband import HyperbandSearcher, hyperband_schedule
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.spec.hyperparams import Dimension, build_dimension

RESOURCE = "epochs"


def searcher(
    params: dict[str, Any] | None = None,
    seed: int = 7,
    *,
    max_iterations: int = 81,
    eta: float = 3,
    resource_type: str | None = "int",
    optimization: str | None = None,
    resume: bool | None = None,
) -> HyperbandSearcher:
    if params is None:
        params = {"lr": {"kind": "uniform", "value": [0, 1]}}
    data: dict[str, Any] = {
        "kind": "hyperband",
        "maxIterations": max_iterations,
        "eta": eta,
        "resource": {"name": RESOURCE, **({"type": resource_type} if resource_type else {})},
        "metric": {"name": "loss", **({"optimization": optimization} if optimization else {})},
        "params": params,
    }
    if resume is not None:
        data["resume"] = resume
    matrix = decode(data, m.Matrix)
    assert isinstance(matrix, m.Hyperband)
    dimensions: dict[str, Dimension] = {
        key: build_dimension(param, f"matrix.params.{key}")
        for key, param in (matrix.params or {}).items()
    }
    return HyperbandSearcher(matrix, dimensions, seed)


def config(suggestion: Suggestion) -> dict[str, Any]:
    return {k: v for k, v in suggestion.params.items() if k != RESOURCE}


def loss(suggestion: Suggestion) -> float:
    """The known value of a configuration (the resource does not change the ranking)."""
    return float(suggestion.params["lr"])


def succeeded(suggestion: Suggestion) -> Observation:
    return Observation("succeeded", {"loss": loss(suggestion)})


class Driver:
    """Plays the engine: keeps ``slots`` runs going and ends them in an order drawn from
    ``order_seed`` (out of order), recording every answer it gets."""

    def __init__(
        self,
        search: HyperbandSearcher,
        slots: int = 1,
        outcome: Callable[[Suggestion], Observation] = succeeded,
        order_seed: int = 0,
    ) -> None:
        self.search, self.slots, self.outcome = search, slots, outcome
        self.order = random.Random(order_seed)
        self.made: list[Suggestion] = []
        self.observed: dict[int, Observation] = {}
        self.running: list[int] = []
        #: (number of runs going, number of suggestions made) at each WAIT.
        self.waits: list[tuple[int, int]] = []
        self.done = False

    async def step(self) -> bool:
        """Fill the free slots, then end one run; False once the search is over."""
        while len(self.running) < self.slots:
            got = await self.search.suggest(len(self.made))
            if isinstance(got, Suggestion):
                self.running.append(len(self.made))
                self.made.append(got)
                continue
            if got is WAIT:
                assert self.running, "WAIT with nothing running would hang the engine"
                self.waits.append((len(self.running), len(self.made)))
            else:
                assert got is DONE and not self.running, "DONE while runs are going"
                self.done = True
            break
        if not self.running:
            return False
        index = self.running.pop(self.order.randrange(len(self.running)))
        self.observed[index] = self.outcome(self.made[index])
        self.search.observe(index, self.observed[index])
        return True

    def run(self, steps: int | None = None) -> Driver:
        async def main() -> None:
            count = 0
            while (steps is None or count < steps) and await self.step():
                count += 1

        anyio.run(main)
        return self

    def history(self) -> list[Past]:
        return [Past(i, s, self.observed.get(i)) for i, s in enumerate(self.made)]

    def crash(self, search: HyperbandSearcher) -> Driver:
        """A new engine after a crash: a new searcher restored from the journal; the runs
        that were going are run again and end in the same order as they would have."""
        search.restore(self.history())
        other = Driver(search, self.slots, self.outcome)
        other.order.setstate(self.order.getstate())
        other.made, other.observed = list(self.made), dict(self.observed)
        other.running = list(self.running)
        return other


def rungs_of(made: list[Suggestion]) -> dict[tuple[int, int], list[int]]:
    """(iteration, rung) → run indexes, in the order they were suggested."""
    out: dict[tuple[int, int], list[int]] = {}
    for index, suggestion in enumerate(made):
        place = suggestion.place
        out.setdefault((place["iteration"], place["rung"]), []).append(index)
    return out


def table(max_iterations: int, eta: float) -> list[list[tuple[int, int | float]]]:
    return [
        [(rung.num_runs, rung.resource) for rung in bracket.rungs]
        for bracket in hyperband_schedule(max_iterations, eta, "int")
    ]


# ----------------------------------------------------------------------------- the schedule
def test_schedule_for_81_and_eta_3() -> None:
    # s_max = int(log 81 / log 3) = 4, B = 5·81 = 405; bracket s: n = ceil(5·3^s/(s+1)),
    # resource 81·3^-s; rung k+1 keeps int(n·3^-k/3) at 3 times the resource.
    #   s=4: n = ceil(405/5) = 81         → 81@1, 27@3, 9@9, 3@27, 1@81
    #   s=3: n = ceil(135/4) = ceil(33.75) = 34 → 34@3, int(34/3) = 11@9,
    #        int(34·3^-1/3) = int(3.78) = 3@27, int(34·3^-2/3) = int(1.26) = 1@81
    #   s=2: n = ceil(45/3) = 15          → 15@9, 5@27, int(15/3/3) = 1@81
    #   s=1: n = ceil(15/2) = ceil(7.5) = 8 → 8@27, int(8/3) = 2@81
    #   s=0: n = ceil(5/1) = 5            → 5@81
    # (Polyaxon's V1Hyperband docstring prints 27/9/3/1 for bracket 3 and 6 for bracket 1:
    # its own code, and the Hyperband paper's table, give the numbers above.)
    assert table(81, 3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    brackets = hyperband_schedule(81, 3)
    assert [(b.iteration, b.bracket) for b in brackets] == [(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)]
    assert sum(b.num_runs for b in brackets) == 121 + 49 + 21 + 10 + 5 == 206


def test_schedule_for_10_and_eta_3() -> None:
    # s_max = int(log 10 / log 3) = int(2.096) = 2, B = 30;
    #   s=2: n = ceil(3·9/3) = 9 at 10/9 = 1.11 → int 1; int(9/3) = 3 at 3.33 → 3;
    #        int(9·3^-1/3) = 1 at 10
    #   s=1: n = ceil(3·3/2) = ceil(4.5) = 5 at 3.33 → 3; int(5/3) = 1 at 10
    #   s=0: n = ceil(3/1) = 3 at 10
    assert table(10, 3) == [[(9, 1), (3, 3), (1, 10)], [(5, 3), (1, 10)], [(3, 10)]]
    # Without a type the resource stays Polyaxon's float; "float" makes it one.
    untyped = hyperband_schedule(10, 3)
    assert [r.resource for r in untyped[0].rungs] == [10 * 3.0**-2, 10 * 3.0**-2 * 3, 10.0]
    assert untyped[0].rungs[0].resource == pytest.approx(1.1111111111111112)
    assert hyperband_schedule(10, 3, "float")[2].rungs[0].resource == 10.0


def test_schedule_edges_and_int_truncation_as_polyaxon() -> None:
    assert table(1, 3) == [[(1, 1)]]
    assert table(3, 3) == [[(3, 1), (1, 3)], [(2, 3)]]
    # 50·1.5^-3·1.5^3 is 49.99999999999999: Polyaxon's int() makes it 49, so do we.
    assert table(50, 1.5)[3][-1] == (1, 49)
    # A small discrete space caps every first rung; the halvings follow what it holds.
    assert [[r.num_runs for r in b.rungs] for b in hyperband_schedule(10, 3, "int", space=4)] == [
        [4, 1],
        [4, 1],
        [3],
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eta": 1}, "matrix.eta"),
        ({"eta": 0.5}, "matrix.eta"),
        ({"max_iterations": 0}, "matrix.maxIterations"),
        ({"max_iterations": 10**9, "eta": 1.001}, "matrix.maxIterations"),
    ],
)
def test_numbers_the_algorithm_cannot_use_are_spec_errors(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        searcher(**change)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_missing_fields_and_a_resource_that_is_also_a_param() -> None:
    matrix = decode({"kind": "hyperband", "maxIterations": 9, "eta": 3}, m.Matrix)
    with pytest.raises(SpecError) as caught:
        HyperbandSearcher(matrix, {}, 1)
    assert caught.value.field == "matrix.resource"
    with pytest.raises(SpecError) as caught:
        searcher({RESOURCE: {"kind": "choice", "value": [1, 2]}})
    assert caught.value.field == "matrix.resource.name"


# ----------------------------------------------------------------------------- the search
def test_it_is_a_searcher_and_total_is_the_number_of_runs_made() -> None:
    search = searcher()
    assert isinstance(search, Searcher)
    assert search.total == 206
    driver = Driver(search).run()
    assert driver.done and len(driver.made) == 206 == search.total
    sizes = {key: len(runs) for key, runs in rungs_of(driver.made).items()}
    assert [sizes[(0, k)] for k in range(5)] == [81, 27, 9, 3, 1]
    assert [sizes[(1, k)] for k in range(4)] == [34, 11, 3, 1]
    for index, suggestion in enumerate(driver.made):
        iteration, rung = suggestion.place["iteration"], suggestion.place["rung"]
        assert suggestion.place["bracket"] == 4 - iteration
        assert suggestion.params[RESOURCE] == table(81, 3)[iteration][rung][1], index
        assert next(iter(suggestion.params)) == RESOURCE  # Polyaxon's order: resource first
        assert suggestion.resumes is None


def test_each_rung_runs_the_best_of_the_one_before_best_first() -> None:
    driver = Driver(searcher(), slots=5, order_seed=3).run()
    by_rung = rungs_of(driver.made)
    checked = 0
    for (iteration, rung), runs in by_rung.items():
        if rung == 0:
            assert len({str(config(driver.made[i])) for i in runs}) == len(runs)  # no duplicate
            continue
        before = sorted(by_rung[(iteration, rung - 1)], key=lambda i: loss(driver.made[i]))
        best = [config(driver.made[i]) for i in before[: len(runs)]]
        assert [config(driver.made[i]) for i in runs] == best
        checked += 1
    assert checked == 4 + 3 + 2 + 1


def test_maximize_promotes_the_highest_values() -> None:
    driver = Driver(searcher(optimization="maximize")).run()
    by_rung = rungs_of(driver.made)
    first = sorted((loss(driver.made[i]) for i in by_rung[(0, 0)]), reverse=True)
    assert sorted((loss(driver.made[i]) for i in by_rung[(0, 1)]), reverse=True) == first[:27]
    assert loss(driver.made[by_rung[(0, 4)][0]]) == first[0]


def test_runs_with_no_value_are_never_promoted_and_total_shrinks() -> None:
    def outcome(suggestion: Suggestion) -> Observation:
        lr = loss(suggestion)
        if lr < 0.2:  # the best configurations fail
            return Observation("failed", {"loss": lr})
        if lr < 0.4:  # succeed without the metric, or with no finite value
            return Observation("succeeded", {"loss": math.nan} if lr < 0.3 else {})
        if lr > 0.95:  # stopped early, with a (great, if maximizing) last value
            return Observation("stopped", {"loss": lr})
        return Observation("succeeded", {"loss": lr})

    search = searcher()
    driver = Driver(search, slots=4, outcome=outcome).run()
    promoted = [s for s in driver.made if s.place["rung"] > 0]
    assert promoted and all(0.4 <= loss(s) <= 0.95 for s in promoted)
    assert len(driver.made) == search.total

    # When fewer runs have a value than the next rung holds, it runs only those.
    def mostly_failing(suggestion: Suggestion) -> Observation:
        ok = loss(suggestion) > 0.9
        return Observation("succeeded" if ok else "failed", {"loss": loss(suggestion)})

    search = searcher()
    driver = Driver(search, slots=3, outcome=mostly_failing).run()
    by_rung = rungs_of(driver.made)
    valid = [i for i in by_rung[(0, 0)] if loss(driver.made[i]) > 0.9]
    assert 0 < len(valid) < 27
    assert len(by_rung[(0, 1)]) == len(valid)
    assert len(driver.made) == search.total < 206


def test_no_wait_while_another_bracket_can_start() -> None:
    slots = 8
    driver = Driver(searcher(), slots=slots, order_seed=11).run()
    first_rungs = sum(b.rungs[0].num_runs for b in hyperband_schedule(81, 3))
    # Every WAIT came after the last bracket's first rung was handed out: until then every
    # slot was kept busy.
    assert driver.waits
    for _running, made in driver.waits:
        rung0 = sum(1 for s in driver.made[:made] if s.place["rung"] == 0)
        assert rung0 == first_rungs
    # Brackets overlap: bracket 3 starts before bracket 4 has finished its first rung's runs.
    first_of_next = next(i for i, s in enumerate(driver.made) if s.place["iteration"] == 1)
    assert first_of_next < max(rungs_of(driver.made)[(0, 1)])
    assert len(driver.made) == 206


def test_promoted_runs_come_before_new_configurations() -> None:
    driver = Driver(searcher(), slots=8, order_seed=5).run()
    # Once bracket 4's first rung is observed in full, its 27 promoted runs go next.
    by_rung = rungs_of(driver.made)
    start = by_rung[(0, 1)][0]
    assert [s.place["rung"] for s in driver.made[start : start + 27]] == [1] * 27


def test_resume_continues_the_run_the_configuration_came_from() -> None:
    driver = Driver(searcher(resume=True), slots=4, order_seed=2).run()
    resumed = 0
    for index, suggestion in enumerate(driver.made):
        if suggestion.place["rung"] == 0:
            assert suggestion.resumes is None
            continue
        source = driver.made[suggestion.resumes or 0]
        assert suggestion.resumes is not None and suggestion.resumes < index
        assert source.place["iteration"] == suggestion.place["iteration"]
        assert source.place["rung"] == suggestion.place["rung"] - 1
        assert config(source) == config(suggestion)
        resumed += 1
    assert resumed == 206 - (81 + 34 + 15 + 8 + 5)


def test_same_seed_same_search_other_seed_other_configurations() -> None:
    one = Driver(searcher(seed=3), slots=6, order_seed=1).run().made
    two = Driver(searcher(seed=3), slots=6, order_seed=1).run().made
    other = Driver(searcher(seed=4), slots=6, order_seed=1).run().made
    assert one == two
    assert [config(s) for s in one[:81]] != [config(s) for s in other[:81]]
    # Each bracket draws its own configurations (Polyaxon, reseeding each iteration with the
    # same seed, gives bracket 3 the first 34 of bracket 4's).
    first = {s.place["iteration"]: config(s) for s in reversed(one) if s.place["rung"] == 0}
    assert len({str(c) for c in first.values()}) == 5


def test_a_small_discrete_space_caps_each_bracket_without_duplicates() -> None:
    params = {
        "lr": {"kind": "choice", "value": [0.1, 0.2]},
        "act": {"kind": "choice", "value": ["relu", "tanh"]},
    }
    search = searcher(params, max_iterations=10)
    assert search.total == 4 + 1 + 4 + 1 + 3
    driver = Driver(search, slots=2).run()
    assert len(driver.made) == 13
    for iteration in range(3):
        first = [config(driver.made[i]) for i in rungs_of(driver.made)[(iteration, 0)]]
        assert len({str(c) for c in first}) == len(first)


def test_a_space_the_sampler_cannot_fill_shrinks_the_bracket() -> None:
    # Space 2, but the first value has probability 0: each bracket finds one configuration.
    search = searcher(
        {"lr": {"kind": "pchoice", "value": [[0.1, 0.0], [0.2, 0.5]]}}, 1, max_iterations=10
    )
    assert search.total == 3
    driver = Driver(search).run()
    assert [(s.place["iteration"], s.params) for s in driver.made] == [
        (0, {RESOURCE: 1, "lr": 0.2}),
        (1, {RESOURCE: 3, "lr": 0.2}),
        (2, {RESOURCE: 10, "lr": 0.2}),
    ]


def test_no_params_still_runs_the_resource_schedule() -> None:
    driver = Driver(searcher({}, max_iterations=9), outcome=lambda s: Observation("succeeded"))
    driver.run()
    assert [s.params for s in driver.made] == [{RESOURCE: 1}, {RESOURCE: 3}, {RESOURCE: 9}]
    assert driver.done


# ----------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("steps", [0, 1, 40, 95, 150, 200])
@pytest.mark.parametrize("resume", [False, True])
def test_restore_continues_with_the_same_remaining_sequence(steps: int, resume: bool) -> None:
    whole = Driver(searcher(seed=9, resume=resume), slots=6, order_seed=4).run().made
    before = Driver(searcher(seed=9, resume=resume), slots=6, order_seed=4).run(steps=steps)
    assert before.running or steps == 0  # crashed with runs going
    after = before.crash(searcher(seed=9, resume=resume)).run()
    assert after.made == whole
    assert after.done


def test_restore_after_the_end_is_done() -> None:
    driver = Driver(searcher(max_iterations=10), slots=3).run()
    again = searcher(max_iterations=10)
    again.restore(driver.history())
    assert anyio.run(again.suggest, len(driver.made)) is DONE
    assert again.total == len(driver.made)


def test_unknown_runs_and_foreign_places_are_refused() -> None:
    search = searcher(max_iterations=10)
    with pytest.raises(ValueError, match="run 3 was not suggested"):
        search.observe(3, Observation("succeeded", {"loss": 1.0}))
    foreign = Past(0, Suggestion({"lr": 0.5}, {"iteration": 7, "rung": 0}), None)
    with pytest.raises(ValueError, match="no place in this hyperband schedule"):
        searcher(max_iterations=10).restore([foreign])
