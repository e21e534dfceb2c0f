"""The process's heap, once it is set up: what start-up made out of the collector's sight.

What a process imports and builds before its work starts (modules, classes, the plan, the
journal, the plugins: tens of thousands of objects) lives as long as it does. CPython's cyclic
collector walked all of it again at every full collection while the work went on, and once
more, object by object, when the interpreter shut down: 60-100 ms at the end of every
``orchestrator run`` on a small machine, and 9-28% of a busy daemon's time
(``benchmarks/bench_daemon.py``).

The heap is the process's, not the orchestrator's: only a process that runs the orchestrator
as its program (``python -m orchestrator``, the ``orchestrator`` command: they call
:func:`own_the_process`) settles it. Called as a library (a test, a notebook), it leaves its
host's collector alone.
"""

from __future__ import annotations

import gc

__all__ = ["GC_YOUNG_THRESHOLD", "own_the_process", "settle_heap", "settle_if_owned"]

#: The youngest generation's collection threshold once settled (CPython's default: 700).
#: A daemon's submission or a sweep's run leaves a few hundred tracked objects: at 700 a
#: young collection ran every run or two, and every tenth of those a middle one; fewer,
#: larger young collections also make full ones rarer.
GC_YOUNG_THRESHOLD = 2000


def settle_heap() -> None:
    """Call once the process is set up, before its work: collect what start-up left as
    garbage (so none is kept), then freeze the rest out of the collector's sight
    (``gc.freeze``), and collect the young generation less often. Frozen objects are still
    freed by reference counting; only cycles among them would stay, and they live as long
    as the process anyway. What is made afterwards (a daemon's sweeps, a sweep's runs) is
    collected as before."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


#: Set by the program's entry point: this process is the orchestrator's own.
_owned = False


def own_the_process() -> None:
    """Say that this process runs the orchestrator as its program (its entry points call
    it first): its heap may be settled once set up (:func:`settle_if_owned`)."""
    global _owned
    _owned = True


def settle_if_owned() -> None:
    """:func:`settle_heap` when this process is the orchestrator's own (a sweep run from the
    command line, the daemon); nothing when the orchestrator is a library of its host."""
    if _owned:
        settle_heap()
