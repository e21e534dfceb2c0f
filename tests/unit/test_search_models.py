"""bayes, tpe and hyperopt searchers driven through the searcher interface, in-process."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.search.base import DONE, WAIT, Observation, Past, Searcher, Suggestion
from orchestrator.search.bayes import BayesSearcher
from orchestrator.search.hyperopt import HyperoptSearcher
from orchestrator.search.tpe import TpeSearcher
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.spec.hyperparams import Discrete
from orchestrator.spec.matrix import expand_matrix

pytest.importorskip("sklearn")
pytest.importorskip("optuna")
pytest.importorskip("hyperopt")

BRANIN_PARAMS = {
    "x": {"kind": "uniform", "value": [-5, 10]},
    "y": {"kind": "uniform", "value": [0, 15]},
}
LOSS = {"name": "loss", "optimization": "minimize"}
SEEDS = range(6)


def branin(params: dict[str, Any]) -> float:
    """Smooth, three global minima of 0.397887, heavy tails."""
    x, y = params["x"], params["y"]
    a = y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6
    return float(a**2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10)


def bowl(params: dict[str, Any]) -> float:
    """A smooth bowl with its minimum, 0, off the centre of the box at (2.5, 7.3)."""
    return float((params["x"] - 2.5) ** 2 + (params["y"] - 7.3) ** 2 / 2)


def matrix(data: dict[str, Any]) -> Any:
    return decode(data, m.Matrix)


def searcher(data: dict[str, Any], seed: int = 0) -> Any:
    """Build the searcher of ``data`` as the engine does: dimensions from ``expand_matrix``."""
    spec = matrix({"metric": LOSS, "params": BRANIN_PARAMS, **data})
    dimensions = dict(expand_matrix(spec, seed=seed).dimensions)
    build = {"bayes": BayesSearcher, "tpe": TpeSearcher, "hyperopt": HyperoptSearcher}
    made = build[data["kind"]](spec, dimensions, seed)
    assert isinstance(made, Searcher)
    return made


def done(value: float) -> Observation:
    return Observation("succeeded", {"loss": value})


async def sweep(
    made: Any, objective: Callable[[dict[str, Any]], float], concurrency: int = 4
) -> list[float]:
    """Run the whole search, ``concurrency`` at a time, the oldest run ending first."""
    values: list[float] = []
    running: list[tuple[int, Suggestion]] = []
    index = 0
    while True:
        while len(running) < concurrency:
            answer = await made.suggest(index)
            if answer is DONE or answer is WAIT:
                break
            assert isinstance(answer, Suggestion)
            running.append((index, answer))
            index += 1
        if not running:
            return values
        ended, suggestion = running.pop(0)
        values.append(objective(suggestion.params))
        made.observe(ended, done(values[-1]))


def random_best(runs: int, seed: int) -> float:
    """The project's random search over the same space, seed and number of runs."""
    spec = matrix({"kind": "random", "params": BRANIN_PARAMS, "numRuns": runs, "seed": seed})
    return min(bowl(p) for p in expand_matrix(spec))


# Bayes: 6 random runs, then 14 from the model; 1000 warm-up points and one L-BFGS-B start
# keep a suggestion near 0.05 s.
BAYES = {
    "kind": "bayes",
    "numInitialRuns": 6,
    "maxIterations": 14,
    "utilityFunction": {
        "acquisitionFunction": "ei",
        "eps": 0.0,
        "numWarmup": 1000,
        "numIterations": 1,
    },
}
# tpe and hyperopt: 3 iterations of 20 runs (hyperopt's tpe starts after 20 random ones).
TPE = {"kind": "tpe", "numRuns": 20, "maxIterations": 2}
HYPEROPT = {"kind": "hyperopt", "algorithm": "tpe", "numRuns": 20, "maxIterations": 2}


@pytest.mark.parametrize(("data", "runs"), [(BAYES, 20), (TPE, 60), (HYPEROPT, 60)])
def test_model_search_beats_random_search_over_seeds(data: dict[str, Any], runs: int) -> None:
    """Two runs at a time (pending runs are modelled), six seeds: the model's best is lower
    than random search's on most seeds and lower in total, not on one lucky seed."""
    wins, model_total, random_total = 0, 0.0, 0.0
    for seed in SEEDS:
        values = anyio.run(sweep, searcher(data, seed), bowl, 2)
        assert len(values) == runs
        best, baseline = min(values), random_best(runs, seed)
        wins += best < baseline
        model_total += best
        random_total += baseline
    assert wins >= 4, (wins, model_total, random_total)
    assert model_total < random_total, (wins, model_total, random_total)


@pytest.mark.parametrize("data", [BAYES, TPE, HYPEROPT])
def test_eight_open_slots_get_eight_different_configurations(data: dict[str, Any]) -> None:
    async def scenario() -> None:
        made = searcher({**data, "numInitialRuns": 4} if data is BAYES else data)
        for index in range(4):
            first = await made.suggest(index)
            made.observe(index, done(branin(first.params)))
        outstanding = [await made.suggest(index) for index in range(4, 12)]
        assert all(isinstance(s, Suggestion) for s in outstanding)
        configurations = {tuple(sorted(s.params.items())) for s in outstanding}
        assert len(configurations) == 8

    anyio.run(scenario)


SMALL_DISCRETE = {
    "a": {"kind": "choice", "value": ["relu", "tanh", "sigmoid"]},
    "b": {"kind": "range", "value": [0, 4, 1]},
    "c": {"kind": "choice", "value": [0.25, 0.5]},
}


@pytest.mark.parametrize("data", [BAYES, TPE, HYPEROPT])
def test_a_small_discrete_space_gets_no_repeat_while_configurations_are_left(
    data: dict[str, Any],
) -> None:
    def score(params: dict[str, Any]) -> float:
        return float(params["b"] + (params["a"] == "tanh") + params["c"])

    spec = matrix({"metric": LOSS, **data, "params": SMALL_DISCRETE})
    dimensions = dict(expand_matrix(spec, seed=3).dimensions)
    made = type(searcher(data))(spec, dimensions, 3)
    values = anyio.run(sweep, made, score, 8)
    seen = [tuple(sorted(s.params.items())) for s in made._made.values()]
    assert len(set(seen)) == min(len(seen), 24)
    assert len(values) == len(seen)


@pytest.mark.parametrize("data", [BAYES, TPE, HYPEROPT])
def test_restore_mid_search_continues_as_the_interrupted_search_would(
    data: dict[str, Any],
) -> None:
    """Seven runs made, four ended (out of order), three still going: a new searcher told
    that history suggests what the first would have, and finishes the search."""

    async def scenario() -> None:
        first = searcher({**data, "numInitialRuns": 4} if data is BAYES else data, seed=7)
        made = [await first.suggest(index) for index in range(4)]
        ended = {}
        for index in (2, 0):
            ended[index] = done(branin(made[index].params))
            first.observe(index, ended[index])
        made += [await first.suggest(index) for index in range(4, 7)]
        for index in (5, 1):
            ended[index] = done(branin(made[index].params))
            first.observe(index, ended[index])
        assert all(isinstance(s, Suggestion) for s in made)
        history = [Past(i, s, ended.get(i)) for i, s in enumerate(made)]
        second = searcher({**data, "numInitialRuns": 4} if data is BAYES else data, seed=7)
        second.restore(history)
        assert second.total == first.total
        for index in (7, 8):
            assert await second.suggest(index) == await first.suggest(index)
        for index in (3, 4, 6, 7, 8):
            value = done(branin(made[index].params if index < 7 else first._made[index].params))
            first.observe(index, value)
            second.observe(index, value)
        index, suggested = 9, [s.params for s in made] + [first._made[i].params for i in (7, 8)]
        while (answer := await second.suggest(index)) is not DONE:
            assert isinstance(answer, Suggestion)
            suggested.append(answer.params)
            second.observe(index, done(branin(answer.params)))
            index += 1
        assert index == second.total
        assert len({tuple(sorted(p.items())) for p in suggested}) == len(suggested)

    anyio.run(scenario)


@pytest.mark.parametrize("data", [BAYES, TPE, HYPEROPT])
def test_the_same_seed_and_results_give_the_same_suggestions(data: dict[str, Any]) -> None:
    runs = [anyio.run(sweep, searcher(data, seed=11), branin, 3) for _ in range(2)]
    assert runs[0] == runs[1]


def test_bayes_waits_for_a_result_then_models_pending_runs() -> None:
    async def scenario() -> None:
        made = searcher({**BAYES, "numInitialRuns": 2})
        assert made.total == 2 + 14
        first = [await made.suggest(index) for index in range(2)]
        assert [s.place for s in first] == [{"iteration": 0}, {"iteration": 0}]
        assert await made.suggest(2) is WAIT
        made.observe(1, done(3.0))
        third = await made.suggest(2)
        assert isinstance(third, Suggestion) and third.place == {"iteration": 1}
        made.observe(0, Observation("failed"))
        made.observe(2, done(1.0))
        assert (await made.suggest(3)).place == {"iteration": 2}

    anyio.run(scenario)


def test_bayes_keeps_going_at_random_when_every_run_failed() -> None:
    async def scenario() -> None:
        made = searcher({**BAYES, "numInitialRuns": 2})
        for index in range(2):
            await made.suggest(index)
            made.observe(index, Observation("failed"))
        assert isinstance(await made.suggest(2), Suggestion)

    anyio.run(scenario)


def test_the_model_works_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []
    made = searcher(TPE)
    propose = made._propose

    def spy(index: int) -> Any:
        threads.append(threading.current_thread())
        return propose(index)

    made._propose = spy
    anyio.run(made.suggest, 0)
    assert threads and threads[0] is not threading.main_thread()


# ----------------------------------------------------------------------------- totals
@pytest.mark.parametrize(
    ("data", "total"),
    [
        ({"kind": "bayes", "numInitialRuns": 40, "maxIterations": 10}, 50),
        ({"kind": "tpe", "numRuns": 20, "maxIterations": 10}, 220),
        ({"kind": "hyperopt", "numRuns": 20, "maxIterations": 10}, 220),
        ({"kind": "tpe", "numRuns": 20}, None),
        ({"kind": "hyperopt", "numRuns": 5, "maxIterations": 1}, 10),
    ],
)
def test_total_is_what_polyaxon_makes(data: dict[str, Any], total: int | None) -> None:
    assert searcher(data).total == total


def test_bayes_initial_runs_are_capped_at_an_all_discrete_space() -> None:
    spec = matrix(
        {"kind": "bayes", "numInitialRuns": 40, "maxIterations": 3, "metric": LOSS}
        | {"params": {"a": {"kind": "choice", "value": [1, 2, 3]}}}
    )
    made = BayesSearcher(spec, dict(expand_matrix(spec, seed=1).dimensions), 1)
    assert made.total == 3 + 3


def test_tpe_ends_after_its_total() -> None:
    async def scenario() -> None:
        made = searcher({"kind": "tpe", "numRuns": 2, "maxIterations": 1})
        places = []
        for index in range(4):
            answer = await made.suggest(index)
            assert isinstance(answer, Suggestion)
            places.append(answer.place["iteration"])
            made.observe(index, done(1.0))
        assert places == [0, 0, 1, 1]
        assert await made.suggest(4) is DONE

    anyio.run(scenario)


# ----------------------------------------------------------------------------- value forms
EVERY_KIND = {
    "choice": {"kind": "choice", "value": ["a", "b", [1, 2]]},
    "range": {"kind": "range", "value": "1:10:3"},
    "linspace": {"kind": "linspace", "value": "0.001:0.1:5"},
    "logspace": {"kind": "logspace", "value": "1:3:3"},
    "geomspace": {"kind": "geomspace", "value": "1:8:4"},
    "uniform": {"kind": "uniform", "value": "0:1"},
    "quniform": {"kind": "quniform", "value": "0:10:2"},
    "loguniform": {"kind": "loguniform", "value": "-4:0"},
    "qloguniform": {"kind": "qloguniform", "value": "0:3:0.5"},
    "normal": {"kind": "normal", "value": "5:0.1"},
    "qnormal": {"kind": "qnormal", "value": "5:1:0.5"},
    "lognormal": {"kind": "lognormal", "value": "0:0.5"},
    "qlognormal": {"kind": "qlognormal", "value": "1:0.5:0.25"},
}


def _multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


@pytest.mark.parametrize("kind", ["tpe", "hyperopt"])
def test_every_library_kind_keeps_polyaxons_meaning(kind: str) -> None:
    spec = matrix({"kind": kind, "numRuns": 30, "metric": LOSS, "params": EVERY_KIND})
    dimensions = dict(expand_matrix(spec, seed=1).dimensions)
    made = (TpeSearcher if kind == "tpe" else HyperoptSearcher)(spec, dimensions, 1)

    async def scenario() -> list[dict[str, Any]]:
        out = []
        for index in range(30):
            answer = await made.suggest(index)
            assert isinstance(answer, Suggestion)
            out.append(answer.params)
            made.observe(index, done(float(index % 7)))
        return out

    for p in anyio.run(scenario):
        assert p["choice"] in (["a", "b", [1, 2]])
        assert p["range"] in (1, 4, 7)
        assert p["logspace"] in (10.0, 100.0, 1000.0)
        assert p["geomspace"] in (1.0, 2.0, 4.0, 8.0)
        assert 0 <= p["uniform"] <= 1
        assert _multiple(p["quniform"], 2) and -1 <= p["quniform"] <= 10
        # Polyaxon's loguniform bounds are in log space: exp(U(-4, 0)).
        assert math.exp(-4) <= p["loguniform"] <= 1
        assert _multiple(p["qloguniform"], 0.5) and 0.5 <= p["qloguniform"] <= math.exp(3) + 0.5
        assert 4 < p["normal"] < 6
        assert _multiple(p["qnormal"], 0.5)
        assert p["lognormal"] > 0
        assert _multiple(p["qlognormal"], 0.25)


def test_bayes_snaps_discrete_numbers_and_one_hots_choices() -> None:
    params = {
        "act": {"kind": "choice", "value": ["relu", "tanh"]},
        "lr": {"kind": "linspace", "value": "0.001:0.1:5"},
        "epochs": {"kind": "choice", "value": [1, 5, 20]},
        "dropout": {"kind": "uniform", "value": "0:0.5"},
    }
    spec = matrix({**BAYES, "numInitialRuns": 3, "metric": LOSS, "params": params})
    made = BayesSearcher(spec, dict(expand_matrix(spec, seed=2).dimensions), 2)

    def score(p: dict[str, Any]) -> float:
        return float((p["act"] == "relu") + abs(p["lr"] - 0.05) + p["epochs"] / 20 + p["dropout"])

    anyio.run(sweep, made, score, 2)
    for suggestion in made._made.values():
        p = suggestion.params
        assert list(p) == list(params)
        assert p["act"] in ("relu", "tanh") and p["epochs"] in (1, 5, 20)
        lr = made._dimensions["lr"]
        assert isinstance(lr, Discrete) and p["lr"] in list(lr.values)
        assert 0 <= p["dropout"] <= 0.5


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("kind", "param"),
    [
        ("bayes", {"kind": "loguniform", "value": "0:1"}),
        ("bayes", {"kind": "normal", "value": "0:1"}),
        ("bayes", {"kind": "quniform", "value": "0:1:0.1"}),
        ("bayes", {"kind": "pchoice", "value": [[1, 0.5], [2, 0.5]]}),
        ("bayes", {"kind": "daterange", "value": ["2019-06-22", "2019-06-25", 1]}),
        ("tpe", {"kind": "pchoice", "value": [[1, 0.5], [2, 0.5]]}),
        ("hyperopt", {"kind": "datetimerange", "value": ["2019-06-22", "2019-06-25", 3600]}),
    ],
)
def test_a_kind_the_algorithm_cannot_model_is_refused(kind: str, param: dict[str, Any]) -> None:
    data = {"bayes": BAYES, "tpe": TPE, "hyperopt": HYPEROPT}[kind]
    spec = matrix({**data, "metric": LOSS, "params": {"p": param}})
    build = {"bayes": BayesSearcher, "tpe": TpeSearcher, "hyperopt": HyperoptSearcher}[kind]
    with pytest.raises(SpecError) as error:
        build(spec, dict(expand_matrix(spec, seed=1).dimensions), 1)
    assert error.value.field == "matrix.params.p.kind"
    assert f"{param['kind']} cannot be used with {kind}" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {**TPE, "params": {"p": {"kind": "uniform", "value": "1:1"}}},
            "matrix.params.p.value",
            "low must be below high",
        ),
        (
            {**HYPEROPT, "params": {"p": {"kind": "normal", "value": "0:0"}}},
            "matrix.params.p.value",
            "scale must be above 0",
        ),
        ({"kind": "hyperopt", "maxIterations": 2}, "matrix.numRuns", "required by hyperopt"),
        (
            {**BAYES, "utilityFunction": {"acquisitionFunction": "ucb"}},
            "matrix.utilityFunction.kappa",
            "ucb requires kappa",
        ),
        (
            {**BAYES, "utilityFunction": {"acquisitionFunction": "poi"}},
            "matrix.utilityFunction.eps",
            "poi requires eps",
        ),
    ],
)
def test_what_polyaxon_refuses_is_refused(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        searcher(data)
    assert error.value.field == field
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("data", "module", "package"),
    [
        (BAYES, "sklearn.gaussian_process", "scikit-learn"),
        (TPE, "optuna", "optuna"),
        (HYPEROPT, "hyperopt", "hyperopt"),
    ],
)
def test_a_missing_library_is_one_line_naming_the_extra(
    data: dict[str, Any], module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # ``import`` now raises ImportError
    with pytest.raises(SpecError) as error:
        searcher(data)
    assert error.value.detail == (
        f"{data['kind']} needs {package}: pip install 'orchestrator[search]'"
    )
    assert error.value.field == "matrix.kind"


def test_importing_the_searchers_imports_no_model_library() -> None:
    code = (
        "import sys, orchestrator.search.bayes, orchestrator.search.tpe, "
        "orchestrator.search.hyperopt, orchestrator.search.space\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'sklearn', 'optuna', 'hyperopt') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("algorithm", ["rand", "anneal"])
def test_hyperopts_other_algorithms_run_a_whole_search(algorithm: str) -> None:
    made = searcher({**HYPEROPT, "algorithm": algorithm, "numRuns": 6, "maxIterations": 1})
    values = anyio.run(sweep, made, bowl, 3)
    assert len(values) == made.total == 12
    assert len({tuple(sorted(s.params.items())) for s in made._made.values()}) == 12


def test_a_distribution_keeps_its_numbers_for_the_model_libraries() -> None:
    from orchestrator.spec.hyperparams import Distribution, build_dimension

    def dimension(kind: str, value: Any) -> Distribution:
        made = build_dimension(decode({"kind": kind, "value": value}, m.HpParam), "matrix.p")
        assert isinstance(made, Distribution)
        return made

    log = dimension("qloguniform", "-2:1:0.5")
    assert (log.low, log.high, log.q, log.loc, log.scale) == (-2, 1, 0.5, None, None)
    normal = dimension("lognormal", {"loc": 0.5, "scale": 2})
    assert (normal.loc, normal.scale, normal.low, normal.q) == (0.5, 2, None, None)
