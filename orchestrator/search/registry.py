"""Which searcher serves a matrix: the built-in one of its kind, or a plugin's.

A plugin registers a search algorithm under the entry point group ``orchestrator.searchers``
(``NAME = "package.module:factory"``); a polyaxonfile selects it with ``tuner: {hubRef: NAME}``
in its adaptive matrix, the field Polyaxon uses to replace a kind's tuner. The factory is
called as ``factory(matrix, dimensions, seed)`` and returns a :class:`Searcher`.
Built-in searchers import their libraries lazily, so this module stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from orchestrator.exceptions import SpecError
from orchestrator.search.base import Searcher
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import Dimension
from orchestrator.spec.matrix import Expansion
from orchestrator.spec.resolve import Plan

__all__ = ["ENTRY_POINT_GROUP", "adaptive_searcher", "plugin_searchers", "searcher_of"]

ENTRY_POINT_GROUP = "orchestrator.searchers"

#: Kind → (module, class) of the built-in searcher, imported when a sweep uses it.
_BUILT_IN: dict[str, tuple[str, str]] = {
    "hyperband": ("orchestrator.search.hyperband", "HyperbandSearcher"),
    "bayes": ("orchestrator.search.bayes", "BayesSearcher"),
    "tpe": ("orchestrator.search.tpe", "TpeSearcher"),
    "hyperopt": ("orchestrator.search.hyperopt", "HyperoptSearcher"),
    "iterative": ("orchestrator.search.iterative", "IterativeSearcher"),
}

Factory = Callable[[Any, dict[str, Dimension], int], Searcher]


def plugin_searchers() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed plugins' search algorithms, by name."""
    return {e.name: e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def adaptive_searcher(
    matrix: m.Matrix, expansion: Expansion, *, iterative: Mapping[str, Any] | None = None
) -> Searcher:
    """The searcher of an adaptive matrix (``expansion.adaptive``), built and checked (a
    SpecError names the field); ``iterative``: what an iterative search needs to run its tuner
    component (:func:`searcher_of` gives it)."""
    assert expansion.seed is not None
    dimensions, seed = dict(expansion.dimensions), expansion.seed
    tuner = getattr(matrix, "tuner", None)
    plugins = plugin_searchers() if tuner is not None else {}
    if tuner is not None and tuner.hub_ref in plugins:
        try:
            factory: Factory = plugins[tuner.hub_ref].load()
            searcher = factory(matrix, dimensions, seed)
        except SpecError:
            raise
        except Exception as exc:  # a plugin's failure is reported, never a traceback
            raise SpecError(
                f"the search plugin {tuner.hub_ref!r} failed: {exc}", field="matrix.tuner.hubRef"
            ) from None
        if not isinstance(searcher, Searcher):
            raise SpecError(
                f"the search plugin {tuner.hub_ref!r} did not return a searcher",
                field="matrix.tuner.hubRef",
            )
        return searcher
    module, name = _BUILT_IN[expansion.kind]
    build = getattr(importlib.import_module(module), name)
    extra = dict(iterative or {}) if isinstance(matrix, m.Iterative) else {}
    return cast(Searcher, build(matrix, dimensions, seed, **extra))


def searcher_of(
    plan: Plan, *, work_dir: Path, environ: Mapping[str, str] | None = None
) -> Searcher | None:
    """The searcher of an adaptive plan (errors name the file), None for the other kinds.

    An iterative search runs its tuner component in ``work_dir`` with ``environ`` (the
    environment runs get), resolved against the polyaxonfile's folder."""
    matrix, expansion = plan.spec.operation.matrix, plan.expansion
    if matrix is None or expansion is None or not expansion.adaptive:
        return None
    iterative = {
        "work_dir": work_dir,
        "source": plan.spec.source,
        "base_dir": plan.spec.base_dir,
        "inputs": [io.name for io in plan.ios if not io.is_output],
        "environ": environ,
    }
    try:
        return adaptive_searcher(matrix, expansion, iterative=iterative)
    except SpecError as exc:
        raise exc.with_file(plan.spec.source) from None
