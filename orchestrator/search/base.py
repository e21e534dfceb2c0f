"""The searcher interface: the engine asks for a configuration the moment a run slot frees,
and tells each result the moment its run ends.

A searcher never sees the engine, the journal or a subprocess: it gets run indexes,
configurations and observations, so it can be tested alone and replaced by a plugin (entry
point group ``orchestrator.searchers``). Every suggestion is journaled with its run; after a
crash ``restore`` hands a new searcher the journaled history, and it continues from there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "DONE",
    "WAIT",
    "Done",
    "Observation",
    "Past",
    "Searcher",
    "Suggestion",
    "Wait",
    "objective",
]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One configuration to run."""

    #: Matrix key → raw value, exactly like a grid point or a mapping entry: the engine types
    #: and renders it like any other suggestion.
    params: dict[str, Any]
    #: Where it sits in the search, JSON-able (``{"bracket": 3, "rung": 1}``,
    #: ``{"iteration": 2}``); journaled with the run and shown by ``show``. Empty for
    #: grid, random and mapping.
    place: dict[str, Any] = field(default_factory=dict)
    #: The index of the earlier run whose outputs folder this run continues from
    #: (hyperband's ``resume: true``); None: a fresh start.
    resumes: int | None = None


class Wait:
    """Nothing to run until a running configuration is observed (a rung waits for its last
    run; an iteration for its tuner)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAIT"


class Done:
    """The search is over: nothing more will be suggested."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


WAIT: Final = Wait()
DONE: Final = Done()


@dataclass(frozen=True, slots=True)
class Observation:
    """How a suggested run ended."""

    #: The run's final state (``succeeded``, ``failed``, ``stopped``, ``skipped``); a cache
    #: hit is ``succeeded``.
    state: str
    #: The last value it reported of each metric.
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: Its outputs (``outputs`` of the component, as written by the run).
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


def objective(observation: Observation, metric: str) -> float | None:
    """The value a search optimises: the run's output named ``metric``, else the last value
    it reported of that metric; None when the run did not succeed or has no finite number
    under that name (such a run is never promoted or modelled as a good one)."""
    if not observation.succeeded:
        return None
    value = observation.outputs.get(metric, observation.metrics.get(metric))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Past:
    """One journaled suggestion, handed to :meth:`Searcher.restore` after a crash."""

    index: int
    suggestion: Suggestion
    #: How it ended; None when it had not finished (the engine runs it again, and the
    #: searcher is told its result like any other's).
    observation: Observation | None


@runtime_checkable
class Searcher(Protocol):
    """What to run next. The engine calls these from one task, never concurrently.

    Optional: a class attribute ``order_sensitive = True`` says that its suggestions depend
    on which results arrived first (a model fitted to them); when the file gives a ``seed``,
    the engine then tells it results in run order, the suggestion for run ``i`` seeing
    exactly those of runs ``0 .. i - concurrency``, so the same seed gives the same runs."""

    @property
    def total(self) -> int | None:
        """How many runs the search makes, when known before it starts (progress, ``plan``);
        None when it depends on results."""
        ...

    async def suggest(self, index: int) -> Suggestion | Wait | Done:
        """The next configuration, which will be run as run ``index`` (indexes count up from
        0, one per configuration suggested); ``WAIT`` while the next one depends on runs still
        going (the engine asks again after the next :meth:`observe`); ``DONE`` at the end.
        Heavy work (fitting a model) belongs in a worker thread, not on the event loop."""
        ...

    def observe(self, index: int, observation: Observation) -> None:
        """Run ``index`` ended. Called once per suggested run, in the order runs end."""
        ...

    def restore(self, history: Sequence[Past]) -> None:
        """Rebuild the state of a search interrupted by a crash, before any :meth:`suggest`:
        ``history`` is every suggestion it made, in index order, with how each ended."""
        ...
