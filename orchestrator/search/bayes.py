"""``kind: bayes``: Polyaxon's Bayesian optimisation, streamed.

As Polyaxon (``hypertune/search_managers/bayesian_optimization``): ``numInitialRuns`` random
configurations first (its random search, capped at the size of an all-discrete space), then
``maxIterations`` suggestions, each the argmax of the utility function (``ucb``: mean +
kappa·std; ``ei`` / ``poi`` with ``eps``) over a scikit-learn Gaussian process (``matern``
with ``nu`` or ``rbf``, ``lengthScale``, ``numRestartsOptimizer``), found from ``numWarmup``
random points (default 5) and ``numIterations`` L-BFGS-B restarts (default 10). Discrete
numbers are one axis snapped to the nearest value, other choices one-hot, keys sorted.

Unlike Polyaxon, which waits for a whole iteration, the model is refit at each suggestion with
every result so far, and each run still going joins it as a *constant liar* at the worst
value observed (Ginsbourger et al., 2010, CL-max for a minimisation): the region of a pending
run looks bad, so eight free slots get eight different configurations. Two deliberate
differences, both for scale invariance: the kernel is scaled by a fitted signal variance and the
targets are normalised (``normalize_y``), and each axis is scaled to [0, 1] by its bounds, so
``lengthScale`` and ``kappa`` mean the same for a loss in [0, 1] or [0, 1000] and for a
learning rate next to a number of epochs (Polyaxon's bare kernel, fit to a loss of another
spread than 1, collapses to a length scale of 1e-5: a model of noise, and random suggestions).
"""

from __future__ import annotations

import bisect
import math
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.search.base import WAIT
from orchestrator.search.modelbased import ModelSearcher, Proposal
from orchestrator.search.space import ORDERED_KINDS, check_kinds, derive_seed, load
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension, Discrete
from orchestrator.spec.matrix import Expansion

__all__ = ["BayesSearcher"]

#: Polyaxon's ``validate_matrix`` for bayes: uniform distributions or discrete kinds (not
#: pchoice, a distribution; the date ranges cannot be a numeric axis).
BAYES_KINDS = frozenset({"choice", "range", "linspace", "logspace", "geomspace", "uniform"})

#: ucb's kappa when the file has no ``utilityFunction`` at all (Polyaxon then fails; this is
#: the default of bayes_opt, the library Polyaxon's code derives from).
DEFAULT_KAPPA = 2.576


@dataclass(frozen=True)
class _Feature:
    """One parameter as columns of the model's input, each scaled to [0, 1]."""

    key: str
    dim: Dimension
    #: One column per value (one-hot) for a choice with a non-number, else one column.
    one_hot: bool
    low: float
    high: float

    @property
    def width(self) -> int:
        return len(self.dim.values) if self.one_hot and isinstance(self.dim, Discrete) else 1

    def encode(self, value: Any) -> list[float]:
        if self.one_hot:
            assert isinstance(self.dim, Discrete)
            return [1.0 if v == value else 0.0 for v in self.dim.values]
        return [(float(value) - self.low) / ((self.high - self.low) or 1.0)]

    def decode(self, columns: Any) -> Any:
        dim = self.dim
        if self.one_hot:
            assert isinstance(dim, Discrete)
            return dim.values[int(max(range(len(columns)), key=lambda i: columns[i]))]
        x = self.low + float(columns[0]) * (self.high - self.low)
        if not isinstance(dim, Discrete):
            return min(self.high, max(self.low, x))
        values = dim.values
        if dim.kind in ORDERED_KINDS:
            at = bisect.bisect_left(values, x)
            near = [i for i in (at - 1, at) if 0 <= i < len(values)]
        else:
            near = list(range(len(values)))
        return values[min(near, key=lambda i: abs(values[i] - x))]


def _feature(key: str, dim: Dimension) -> _Feature:
    if isinstance(dim, Discrete):
        values = dim.values
        if dim.kind in ORDERED_KINDS:
            return _Feature(key, dim, False, float(values[0]), float(values[-1]))
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if not numbers:
            return _Feature(key, dim, True, 0.0, 1.0)
        return _Feature(key, dim, False, float(min(values)), float(max(values)))
    assert dim.low is not None and dim.high is not None
    return _Feature(key, dim, False, dim.low, dim.high)


@dataclass(frozen=True)
class _Utility:
    """The file's utility function, with Polyaxon's defaults."""

    acquisition: str
    kappa: float
    eps: float
    kernel: str
    length_scale: float
    nu: float
    restarts: int
    warmup: int
    iterations: int


def _utility(config: m.UtilityFunction | None) -> _Utility:
    given = config is not None
    config = config or m.UtilityFunction()
    acquisition = config.acquisition_function or "ucb"
    # Polyaxon's ``validate_utility_function``.
    if given and acquisition == "ucb" and config.kappa is None:
        raise SpecError("ucb requires kappa", field="matrix.utilityFunction.kappa")
    if acquisition in {"ei", "poi"} and config.eps is None:
        raise SpecError(f"{acquisition} requires eps", field="matrix.utilityFunction.eps")
    process = config.gaussian_process or m.GaussianProcess()
    return _Utility(
        acquisition=acquisition,
        kappa=DEFAULT_KAPPA if config.kappa is None else config.kappa,
        eps=config.eps or 0.0,
        kernel=process.kernel or "matern",
        length_scale=1.0 if process.length_scale is None else process.length_scale,
        nu=1.5 if process.nu is None else process.nu,
        restarts=process.num_restarts_optimizer or 0,
        # BOOptimizer: ``num_warmup or 5``, ``num_iterations or 10``.
        warmup=config.num_warmup or 5,
        iterations=config.num_iterations or 10,
    )


class BayesSearcher(ModelSearcher):
    """Random initial runs, then one Gaussian-process suggestion per free slot."""

    def __init__(self, matrix: m.Bayes, dimensions: Mapping[str, Dimension], seed: int) -> None:
        check_kinds(dimensions, BAYES_KINDS, "bayes")
        self._utility = _utility(matrix.utility_function)
        space = math.prod(len(d) for d in dimensions.values() if isinstance(d, Discrete))
        all_discrete = all(isinstance(d, Discrete) for d in dimensions.values())
        initial = matrix.num_initial_runs
        self._initial = min(initial, space) if all_discrete else initial
        super().__init__(matrix.metric, dimensions, seed, self._initial + matrix.max_iterations)
        self._np: ModuleType = load("numpy", "bayes", "scikit-learn")
        self._sklearn: ModuleType = load("sklearn.gaussian_process", "bayes", "scikit-learn")
        self._scipy_stats = load("scipy.stats", "bayes", "scikit-learn")
        self._scipy_optimize = load("scipy.optimize", "bayes", "scikit-learn")
        self._sklearn_base = load("sklearn", "bayes", "scikit-learn")
        exceptions = load("sklearn.exceptions", "bayes", "scikit-learn")
        # A kernel fit that stops at its iteration limit is still a usable model.
        warnings.filterwarnings("ignore", category=exceptions.ConvergenceWarning)
        self._features = [_feature(key, dimensions[key]) for key in sorted(dimensions)]
        # Polyaxon's random search: seeded, without duplicates.
        randoms = Expansion("random", list(dimensions), self._initial, dict(dimensions), seed=seed)
        self._randoms = iter(randoms)

    # ------------------------------------------------------------------ bookkeeping
    def _propose(self, index: int) -> Proposal:
        if len(self._made) < self._initial:
            params = next(self._randoms, None)
            if params is not None:
                return params, {"iteration": 0}
        iteration = len(self._made) - self._initial + 1
        # In index order: the model is the same whatever order the runs ended in (a restored
        # searcher replays them in index order).
        observed = sorted(i for i, value in self._results.items() if value is not None)
        if not observed:
            if self.pending:
                return WAIT
            # Every run so far failed: nothing to model, keep exploring at random.
            rng = random.Random(derive_seed(self._seed, index))
            params = {key: dim.sample(rng) for key, dim in self._dimensions.items()}
            return params, {"iteration": iteration}
        return self._maximize_utility(index, observed), {"iteration": iteration}

    def _replay(self, index: int, params: Mapping[str, Any]) -> None:
        if index < self._initial:
            next(self._randoms, None)

    def _learn(self, index: int, value: float | None, state: str) -> None:
        """Results are read from ``_results`` at the next suggestion."""

    # ------------------------------------------------------------------ the model
    def _encode(self, params: Mapping[str, Any]) -> list[float]:
        return [c for feature in self._features for c in feature.encode(params[feature.key])]

    def _decode(self, x: Any) -> dict[str, Any]:
        decoded: dict[str, Any] = {}
        start = 0
        for feature in self._features:
            decoded[feature.key] = feature.decode(x[start : start + feature.width])
            start += feature.width
        return {key: decoded[key] for key in self._dimensions}

    def _maximize_utility(self, index: int, observed: list[int]) -> dict[str, Any]:
        np = self._np
        sign = 1.0 if self._maximize else -1.0
        ys = [sign * v for i in observed if (v := self._results[i]) is not None]
        lie = min(ys)
        pending = self.pending
        x = np.array([self._encode(self._made[i].params) for i in [*observed, *pending]])
        y = np.array([*ys, *([lie] * len(pending))])
        rng = np.random.RandomState(derive_seed(self._seed, index))
        gp = self._process(rng)
        # The acquisition is evaluated thousands of times on points made here: checking
        # each input costs scikit-learn more than the prediction (the setting is per thread).
        with self._sklearn_base.config_context(assume_finite=True, skip_parameter_validation=True):
            gp.fit(x, y)
            candidates = self._candidates(gp, max(ys), rng, x.shape[1])
        for candidate in candidates:
            params = self._decode(candidate)
            if self.is_new(params):
                return params
        # Every optimum found is a configuration already run (a small discrete space): the
        # next best thing to a new point the model likes is a new point.
        return self.unseen(index) or self._decode(candidates[0])

    def _process(self, rng: Any) -> Any:
        kernels = self._sklearn.kernels
        u = self._utility
        if u.kernel == "rbf":
            kernel = kernels.RBF(length_scale=u.length_scale)
        else:
            kernel = kernels.Matern(length_scale=u.length_scale, nu=u.nu)
        # Scaled by a fitted signal variance: Polyaxon's bare kernel has a fixed variance of
        # 1, and fitting it to data of another spread drives the length scale to its 1e-5
        # bound, a model of pure noise that makes every suggestion a random one.
        return self._sklearn.GaussianProcessRegressor(
            kernel=kernels.ConstantKernel(1.0) * kernel,
            n_restarts_optimizer=u.restarts,
            normalize_y=True,
            random_state=rng,
        )

    def _acquisition(self, gp: Any, x: Any, y_max: float) -> Any:
        np, norm = self._np, self._scipy_stats.norm
        mean, std = gp.predict(x, return_std=True)
        u = self._utility
        if u.acquisition == "ucb":
            return mean + u.kappa * std
        std = np.maximum(std, 1e-12)
        z = (mean - y_max - u.eps) / std
        if u.acquisition == "ei":
            return (mean - y_max - u.eps) * norm.cdf(z) + std * norm.pdf(z)
        return norm.cdf(z)

    def _candidates(self, gp: Any, y_max: float, rng: Any, width: int) -> list[Any]:
        """Polyaxon's ``max_compute``: the best of ``numWarmup`` random points, then
        L-BFGS-B from ``numIterations`` random starts; every point found, best first (the
        first that is not a configuration already run wins)."""
        np, minimize = self._np, self._scipy_optimize.minimize
        u = self._utility
        bounds = np.array([(0.0, 1.0)] * width)
        warm = rng.uniform(0.0, 1.0, size=(u.warmup, width))
        scores = self._acquisition(gp, warm, y_max)
        found = [(float(a), tuple(p)) for a, p in zip(scores, warm, strict=True)]
        for start in rng.uniform(0.0, 1.0, size=(u.iterations, width)):
            result = minimize(
                lambda p: -self._acquisition(gp, p.reshape(1, -1), y_max)[0],
                start,
                bounds=bounds,
                method="L-BFGS-B",
            )
            if result.success:
                point = np.clip(result.x, 0.0, 1.0)
                found.append((float(-np.ravel(result.fun)[0]), tuple(point)))
        found.sort(key=lambda item: -item[0])
        return [np.array(point) for _, point in found]
