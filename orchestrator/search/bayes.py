"""``kind: bayes``: Polyaxon's Bayesian optimisation, streamed.

As Polyaxon (``hypertune/search_managers/bayesian_optimization``): ``numInitialRuns`` random
configurations first (its random search, capped at the size of an all-discrete space), then
``maxIterations`` suggestions, each the argmax of the utility function (``ucb``: mean +
kappa·std; ``ei`` / ``poi`` with ``eps``) over a scikit-learn Gaussian process (``matern``
with ``nu`` or ``rbf``, ``lengthScale``, ``numRestartsOptimizer``), found from ``numWarmup``
random points (default 5; at least 2000 here, scored in one vectorised pass) and
``numIterations`` L-BFGS-B restarts (default 10; here with exact gradients, from as many random
starts and as many of the best first-pass points). Discrete numbers are one axis snapped to the
nearest value, other choices one-hot, keys sorted.

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


#: The acquisition is scored at least at this many random points, in one vectorised pass,
#: before L-BFGS-B starts from the best of them (Polyaxon's ``numWarmup`` when larger).
WARM_POINTS = 2000

#: What the model needs, imported when a searcher is built (never at import time).
_LIBRARIES = ("numpy", "scipy.linalg", "scipy.spatial.distance", "scipy.special", "scipy.optimize")


@dataclass(frozen=True)
class _Libraries:
    np: ModuleType
    linalg: ModuleType
    distance: ModuleType
    special: ModuleType
    optimize: ModuleType


class _Posterior:
    """The fitted process's mean and standard deviation, and their gradients, from its
    arrays: the numbers ``predict(x, return_std=True)`` gives, without scikit-learn's checks
    on every call (they cost more than the prediction), and exact gradients for L-BFGS-B
    (finite differences cost one prediction per axis a step)."""

    def __init__(self, gp: Any, lib: _Libraries) -> None:
        np = lib.np
        self._lib = lib
        # ConstantKernel * (Matern | RBF), as :meth:`BayesSearcher._process` builds it.
        self._signal = float(gp.kernel_.k1.constant_value)
        inner = gp.kernel_.k2
        self._nu = float(getattr(inner, "nu", math.inf))
        self._scale = np.asarray(inner.length_scale, dtype=float)
        self._train = gp.X_train_ / self._scale
        self._alpha = np.ravel(gp.alpha_)
        self._chol = gp.L_
        self._y_mean = float(np.ravel(gp._y_train_mean)[0])
        self._y_std = float(np.ravel(gp._y_train_std)[0])

    def _kernel(self, r: Any) -> tuple[Any, Any]:
        """k(r) as scikit-learn computes it, and k'(r) / r (0 where r is 0: no direction)."""
        np, nu = self._lib.np, self._nu
        if nu == 0.5:
            k = np.exp(-r)
            slope = -k / np.where(r > 0, r, 1.0)
        elif nu == 1.5:
            s = math.sqrt(3.0) * r
            k, slope = (1.0 + s) * np.exp(-s), -3.0 * np.exp(-s)
        elif nu == 2.5:
            s = math.sqrt(5.0) * r
            k = (1.0 + s + s * s / 3.0) * np.exp(-s)
            slope = -5.0 / 3.0 * (1.0 + s) * np.exp(-s)
        elif math.isinf(nu):
            k = np.exp(-0.5 * r * r)
            slope = -k
        else:  # d/dz (z^nu K_nu(z)) = -z^nu K_(nu-1)(z)
            kv, gamma = self._lib.special.kv, self._lib.special.gamma
            z = math.sqrt(2.0 * nu) * np.where(r == 0.0, np.finfo(float).eps, r)
            front = 2.0 ** (1.0 - nu) / gamma(nu)
            k = front * z**nu * kv(nu, z)
            slope = -front * 2.0 * nu * z ** (nu - 1.0) * kv(nu - 1.0, z)
        return self._signal * k, self._signal * np.where(r > 0, slope, 0.0)

    def predict(self, x: Any) -> tuple[Any, Any]:
        """Mean and std at each row of ``x``, in one pass."""
        np, solve = self._lib.np, self._lib.linalg.solve_triangular
        k = self._kernel(self._lib.distance.cdist(x / self._scale, self._train))[0]
        mean = self._y_std * (k @ self._alpha) + self._y_mean
        v = solve(self._chol, k.T, lower=True, check_finite=False)
        var = np.maximum(self._signal - np.einsum("ij,ij->j", v, v), 0.0)
        return mean, np.sqrt(var * self._y_std**2)

    def predict_gradient(self, point: Any) -> tuple[float, float, Any, Any]:
        """Mean and std at one point, and their gradients."""
        np, solve = self._lib.np, self._lib.linalg.solve_triangular
        diff = point / self._scale - self._train
        k, slope = self._kernel(np.sqrt(np.einsum("ij,ij->i", diff, diff)))
        d_k = slope[:, None] * diff / self._scale
        mean = self._y_std * float(k @ self._alpha) + self._y_mean
        d_mean = self._y_std * (self._alpha @ d_k)
        v = solve(self._chol, k, lower=True, check_finite=False)
        var = max(self._signal - float(v @ v), 0.0)
        if var == 0.0:
            return mean, 0.0, d_mean, np.zeros_like(d_mean)
        w = solve(self._chol, v, lower=True, trans="T", check_finite=False)
        return mean, self._y_std * math.sqrt(var), d_mean, -self._y_std * (w @ d_k) / math.sqrt(var)


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

    def acquire(self, lib: _Libraries, mean: Any, std: Any, best: float) -> tuple[Any, Any, Any]:
        """The utility (Polyaxon's formulas) and its derivatives by the mean and the std."""
        if self.acquisition == "ucb":
            return mean + self.kappa * std, 1.0, self.kappa
        std = lib.np.maximum(std, 1e-12)
        gap = mean - best - self.eps
        z = gap / std
        # What norm.cdf and norm.pdf compute, without scipy.stats' overhead on each call.
        cdf = lib.special.ndtr(z)
        pdf = lib.np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        if self.acquisition == "ei":
            return gap * cdf + std * pdf, cdf, pdf
        return cdf, pdf / std, -z * pdf / std


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
        self._lib = _Libraries(*(load(name, "bayes", "scikit-learn") for name in _LIBRARIES))
        self._sklearn: ModuleType = load("sklearn.gaussian_process", "bayes", "scikit-learn")
        exceptions = load("sklearn.exceptions", "bayes", "scikit-learn")
        # Made once the libraries are loaded: it finds their BLAS (threadpoolctl comes with
        # scikit-learn).
        self._blas = load("threadpoolctl", "bayes", "scikit-learn").ThreadpoolController()
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
        np = self._lib.np
        sign = 1.0 if self._maximize else -1.0
        ys = [sign * v for i in observed if (v := self._results[i]) is not None]
        lie = min(ys)
        pending = self.pending
        x = np.array([self._encode(self._made[i].params) for i in [*observed, *pending]])
        y = np.array([*ys, *([lie] * len(pending))])
        rng = np.random.RandomState(derive_seed(self._seed, index))
        # Matrices of a few hundred rows at most: BLAS threads gain nothing on them and, on
        # busy cores, spin against each other and the runs (5-15x slower, measured with 2).
        with self._blas.limit(limits=1, user_api="blas"):
            posterior = _Posterior(self._process(rng).fit(x, y), self._lib)
            candidates = self._candidates(posterior, max(ys), rng, x.shape[1])
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

    def _negative(self, point: Any, posterior: _Posterior, y_max: float) -> tuple[float, Any]:
        """Minus the utility at one point and its gradient, for L-BFGS-B."""
        mean, std, d_mean, d_std = posterior.predict_gradient(point)
        value, by_mean, by_std = self._utility.acquire(self._lib, mean, std, y_max)
        return -float(value), -(by_mean * d_mean + by_std * d_std)

    def _candidates(self, posterior: _Posterior, y_max: float, rng: Any, width: int) -> Any:
        """Polyaxon's ``max_compute``, vectorised: the utility at ``numWarmup`` random points
        (at least :data:`WARM_POINTS`) in one pass, then L-BFGS-B with exact gradients from
        ``numIterations`` random starts, as Polyaxon, and from the ``numIterations`` best
        points of the first pass; every point scored, best first (the first that is not a
        configuration already run wins)."""
        np, minimize = self._lib.np, self._lib.optimize.minimize
        u = self._utility
        warm = rng.uniform(0.0, 1.0, size=(max(u.warmup, WARM_POINTS), width))
        mean, std = posterior.predict(warm)
        scores = u.acquire(self._lib, mean, std, y_max)[0]
        best = warm[np.argsort(-scores, kind="stable")[: u.iterations]]
        starts = np.concatenate([best, rng.uniform(0.0, 1.0, size=(u.iterations, width))])
        points, values = [warm], [scores]
        for start in starts:
            result = minimize(
                self._negative,
                start,
                args=(posterior, y_max),
                jac=True,
                bounds=[(0.0, 1.0)] * width,
                method="L-BFGS-B",
            )
            if result.success:
                points.append(np.clip(result.x, 0.0, 1.0)[None, :])
                values.append(np.array([-float(result.fun)]))
        order = np.argsort(-np.concatenate(values), kind="stable")
        return np.concatenate(points)[order]
