"""Searchers: what a sweep runs next, one configuration at a time, told every result.

Grid, random and mapping expand the matrix; hyperband, bayes, tpe/hyperopt and iterative
adapt to the results. The engine drives every kind through the one interface in
:mod:`orchestrator.search.base`; this package knows the spec, never the engine or the store.
"""
