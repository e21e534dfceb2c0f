"""A submission's spec loaded and its plan compiled: in a worker thread unless known cheap.

Loading (YAML, validation, a ``urlRef`` fetch) and compiling (every mapping entry checked) run
in a worker thread, bounded by a deadline, so that a slow spec never stalls ``/health``. But a
client that submits the same spec again (other ``-P`` values, another name) should not pay for
the load twice, nor for two thread hand-offs that cost more than the work: a spec whose
component is inline is remembered once loaded (nothing else was read, so the same text loads
the same), and when its last compile with the same overrides was quick, it compiles on the
event loop. A spec that refers to a file, URL or hub component is loaded afresh every time
(what it refers to may have changed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from orchestrator.exceptions import SpecError
from orchestrator.spec import LoadedSpec, Plan, compile_plan, load_text
from orchestrator.spec.resolve import RunPaths

if TYPE_CHECKING:
    from orchestrator.spec.dag import DagPlan

__all__ = ["SUBMIT_TIMEOUT_S", "Compile", "SpecMemo"]

#: Seconds a submission may take to load (urlRef fetch included) and check before it is
#: refused; the work runs in a thread, so the event loop never waits on it.
SUBMIT_TIMEOUT_S = 60.0
#: A compile that took less than this last time runs on the event loop next time.
INLINE_COMPILE_S = 0.002
#: Specs remembered, and the longest text remembered (bounds the memo's memory).
MEMO_ENTRIES = 256
MEMO_TEXT_CHARS = 64 * 1024
#: Worker threads that load and check submissions at once, apart from anyio's shared ones
#: (40): a burst of sweeps whose threads wait there (for a look at their code, see
#: :mod:`orchestrator.provenance`) never makes a submission wait for a thread.
COMPILE_THREADS = 8

#: What a compile depends on besides the loaded spec: the overrides, and an open mapping.
_CompileKey = tuple[tuple[tuple[str, str], ...], bool]


@dataclass
class _Known:
    """A loaded spec, and how long its compiles took (seconds, by overrides and openness)."""

    loaded: LoadedSpec
    compile_s: dict[_CompileKey, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Compile:
    """How to compile a submission's plan (the arguments of :func:`compile_plan`)."""

    params: Mapping[str, str]
    paths: RunPaths
    name: str | None
    open_mapping: bool

    def key(self) -> _CompileKey:
        return tuple(sorted(self.params.items())), self.open_mapping

    def run(self, loaded: LoadedSpec) -> Plan | DagPlan:
        """A sweep's plan, or a pipeline's (``run.kind: dag``): checked whole, nothing run."""
        from orchestrator.spec.dag import compile_dag, is_dag

        if is_dag(loaded):
            if self.open_mapping:
                raise SpecError("a pipeline cannot be an open sweep", field="open")
            return compile_dag(loaded, self.params, paths=self.paths)
        return compile_plan(
            loaded,
            self.params,
            paths=self.paths,
            name=self.name,
            open_mapping=self.open_mapping,
        )


class SpecMemo:
    """Loads and compiles submissions, remembering inline specs (used on the event loop)."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        #: Worker threads of its own (see :data:`COMPILE_THREADS`).
        self._limiter = anyio.CapacityLimiter(COMPILE_THREADS)
        self._known: OrderedDict[tuple[str, str, str], _Known] = OrderedDict()

    async def prepare(
        self, text: str, source: str, base: Path, how: Compile
    ) -> tuple[LoadedSpec, Plan | DagPlan]:
        """The loaded spec and its compiled plan (a pipeline's: a DagPlan); SpecError when
        either fails (or, in the worker thread, takes longer than :data:`SUBMIT_TIMEOUT_S`)."""
        key = (text, source, str(base))
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
            took = known.compile_s.get(how.key())
            if took is not None and took < INLINE_COMPILE_S:
                plan, known.compile_s[how.key()] = _timed_compile(known.loaded, how)
                return known.loaded, plan
        loaded, plan, took = await self._in_thread(known, text, source, base, how)
        self._remember(key, known, loaded, how, took)
        return loaded, plan

    async def _in_thread(
        self, known: _Known | None, text: str, source: str, base: Path, how: Compile
    ) -> tuple[LoadedSpec, Plan | DagPlan, float]:
        def work() -> tuple[LoadedSpec, Plan | DagPlan, float]:
            loaded = known.loaded if known is not None else load_text(text, source, base)
            plan, took = _timed_compile(loaded, how)
            return loaded, plan, took

        # Past the deadline the worker is abandoned (every step of it is bounded too).
        try:
            with anyio.fail_after(SUBMIT_TIMEOUT_S):
                return await anyio.to_thread.run_sync(
                    work, abandon_on_cancel=True, limiter=self._limiter
                )
        except TimeoutError:
            raise SpecError(
                f"loading and checking the spec took longer than {SUBMIT_TIMEOUT_S:g}s",
                file=source,
            ) from None

    def _remember(
        self,
        key: tuple[str, str, str],
        known: _Known | None,
        loaded: LoadedSpec,
        how: Compile,
        took: float,
    ) -> None:
        """Remember ``loaded`` if its component is inline (nothing else was read to load it;
        not a pipeline) and its text is short, with how long this compile took."""
        if known is None:
            from orchestrator.spec.dag import is_dag

            # A pipeline's nodes may refer to files (pathRef): loaded afresh every time.
            inline = loaded.operation.component is not None and not is_dag(loaded)
            if not inline or len(key[0]) > MEMO_TEXT_CHARS:
                return
            known = self._known[key] = _Known(loaded)
            while len(self._known) > self._entries:
                self._known.popitem(last=False)
        if len(known.compile_s) >= self._entries:  # many overrides of one spec: start over
            known.compile_s.clear()
        known.compile_s[how.key()] = took

    def __len__(self) -> int:
        return len(self._known)


def _timed_compile(loaded: LoadedSpec, how: Compile) -> tuple[Plan | DagPlan, float]:
    started = time.perf_counter()
    plan = how.run(loaded)
    return plan, time.perf_counter() - started
