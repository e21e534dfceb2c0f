"""bayes finds the utility's maximum from the fitted Gaussian process's own arrays: the same
mean and std as scikit-learn's ``predict``, exact gradients, one vectorised pass."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from orchestrator.search.base import Observation, Suggestion
from orchestrator.search.bayes import BayesSearcher, _Posterior
from orchestrator.search.space import derive_seed
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode
from orchestrator.spec.matrix import expand_matrix

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

PARAMS = {
    "x": {"kind": "uniform", "value": [-5, 10]},
    "y": {"kind": "uniform", "value": [0, 15]},
    "act": {"kind": "choice", "value": ["relu", "tanh"]},
}
KERNELS = [
    {"kernel": "matern", "nu": 0.5},
    {"kernel": "matern", "nu": 1.5},
    {"kernel": "matern", "nu": 2.5},
    {"kernel": "matern", "nu": 1.2},  # scikit-learn's general case (Bessel functions)
    {"kernel": "rbf"},
]
UTILITIES = [
    {"acquisitionFunction": "ucb", "kappa": 2.576},
    {"acquisitionFunction": "ei", "eps": 0.01},
    {"acquisitionFunction": "poi", "eps": 0.01},
]


def loss(params: dict[str, Any]) -> float:
    """Smooth, a few units of spread: a model that is not noise."""
    tanh = params.get("act") == "tanh"
    return math.sin(params["x"] / 3) + math.cos(params["y"] / 4) + tanh / 2


def searcher(
    utility: dict[str, Any], params: dict[str, Any] = PARAMS, seed: int = 0
) -> BayesSearcher:
    spec = decode(
        {
            "kind": "bayes",
            "numInitialRuns": 20,
            "maxIterations": 5,
            "metric": {"name": "loss", "optimization": "minimize"},
            "params": params,
            "utilityFunction": utility,
        },
        m.Matrix,
    )
    assert isinstance(spec, m.Bayes)
    return BayesSearcher(spec, dict(expand_matrix(spec, seed=seed).dimensions), seed)


def observed(made: BayesSearcher, runs: int = 20) -> BayesSearcher:
    async def scenario() -> None:
        for index in range(runs):
            answer = await made.suggest(index)
            assert isinstance(answer, Suggestion)
            made.observe(index, Observation("succeeded", {"loss": loss(answer.params)}))

    anyio.run(scenario)
    return made


def fitted(made: BayesSearcher, index: int) -> tuple[Any, float]:
    """The process a suggestion for ``index`` fits (every run ended), and the best value."""
    runs = sorted(made._results)
    ys = [-v for i in runs if (v := made._results[i]) is not None]
    x = np.array([made._encode(made._made[i].params) for i in runs])
    gp = made._process(np.random.RandomState(derive_seed(made._seed, index))).fit(x, ys)
    return gp, max(ys)


@pytest.mark.parametrize("process", KERNELS, ids=lambda k: f"{k['kernel']}-{k.get('nu', '')}")
def test_the_posterior_is_scikit_learns_prediction_with_exact_gradients(
    process: dict[str, Any],
) -> None:
    made = observed(searcher({**UTILITIES[0], "gaussianProcess": process}))
    gp, _ = fitted(made, 20)
    posterior = _Posterior(gp, made._lib)
    rng = np.random.RandomState(1)
    points = np.vstack([rng.uniform(size=(200, 4)), gp.X_train_[:3]])
    mean, std = gp.predict(points, return_std=True)
    fast_mean, fast_std = posterior.predict(points)
    np.testing.assert_allclose(fast_mean, mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast_std, std, rtol=1e-7, atol=1e-9)
    step = 1e-6
    for point in points[:20]:
        at, spread, d_mean, d_std = posterior.predict_gradient(point)
        assert at == pytest.approx(posterior.predict(point[None])[0][0], abs=1e-9)
        assert spread == pytest.approx(posterior.predict(point[None])[1][0], abs=1e-9)
        for axis in range(4):
            ahead, behind = point.copy(), point.copy()
            ahead[axis] += step
            behind[axis] -= step
            (m1, s1), (m0, s0) = posterior.predict(ahead[None]), posterior.predict(behind[None])
            scale = 1 + abs(d_mean).max() + abs(d_std).max()
            assert d_mean[axis] == pytest.approx((m1[0] - m0[0]) / (2 * step), abs=1e-5 * scale)
            assert d_std[axis] == pytest.approx((s1[0] - s0[0]) / (2 * step), abs=1e-5 * scale)


@pytest.mark.parametrize("utility", UTILITIES, ids=lambda u: u["acquisitionFunction"])
def test_a_suggestion_is_at_least_as_good_as_the_best_of_many_random_points(
    utility: dict[str, Any],
) -> None:
    """The utility (Polyaxon's formula over scikit-learn's prediction) at the suggestion is
    at least its maximum over 20,000 random points: the first pass and L-BFGS-B miss no
    better region than a dense random search finds."""
    norm = pytest.importorskip("scipy.stats").norm
    process = {"kernel": "matern", "nu": 2.5}
    continuous = {key: PARAMS[key] for key in ("x", "y")}
    made = observed(searcher({**utility, "gaussianProcess": process}, continuous))
    gp, best = fitted(made, 20)
    assert gp.kernel_.k2.length_scale > 1e-3  # a model, not noise

    def utility_at(x: Any) -> Any:
        mean, std = gp.predict(x, return_std=True)
        if utility["acquisitionFunction"] == "ucb":
            return mean + utility["kappa"] * std
        z = (mean - best - utility["eps"]) / np.maximum(std, 1e-12)
        if utility["acquisitionFunction"] == "ei":
            return (mean - best - utility["eps"]) * norm.cdf(z) + std * norm.pdf(z)
        return norm.cdf(z)

    suggestion = anyio.run(made.suggest, 20)
    assert isinstance(suggestion, Suggestion)
    chosen = utility_at(np.array([made._encode(suggestion.params)]))[0]
    dense = np.random.RandomState(5).uniform(size=(20_000, 2))
    assert chosen >= utility_at(dense).max() - 1e-9


def test_the_utility_is_never_computed_through_scikit_learns_predict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its checks on each call cost more than the prediction, thousands of times."""
    process = pytest.importorskip("sklearn.gaussian_process").GaussianProcessRegressor
    made = observed(searcher(UTILITIES[1]))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("predict called")

    monkeypatch.setattr(process, "predict", refuse)
    for index in (20, 21, 22):
        assert isinstance(anyio.run(made.suggest, index), Suggestion)


def test_the_model_works_with_one_blas_thread_and_gives_the_rest_back() -> None:
    """Its matrices are small: more threads only spin against each other and the runs."""
    made = observed(searcher(UTILITIES[0]))

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in made._blas.info() if p["user_api"] == "blas"]

    before, inside = blas_threads(), []
    candidates = made._candidates

    def spy(*args: Any) -> Any:
        inside.append(blas_threads())
        return candidates(*args)

    made._candidates = spy  # type: ignore[assignment]
    assert isinstance(anyio.run(made.suggest, 20), Suggestion)
    assert inside and inside[0] and all(count == 1 for count in inside[0])
    assert blas_threads() == before
