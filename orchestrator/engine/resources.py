"""Resource slots: GPUs (whole or shared), CPU cores and memory, handed to runs atomically.

One :class:`ResourcePool` books one :class:`Inventory`. Everything happens on the event loop
with no await between "does it fit" and "book it", so two runs starting together can never
be given the same capacity.

Placement:

- a share of one card (``0.5``) goes to the fullest card it still fits on (best fit), so
  half-used cards fill up before a free one is broken into; among equals, the smallest card
  that has the memory asked for, then the lowest index;
- whole cards go to cards with nothing booked on them, the smallest ones that qualify first
  (big cards stay free for runs that need big cards);
- ``orchestrator/gpu-memory`` admits only cards with at least that much memory (a card whose
  memory is unknown never qualifies).

Waiting runs are served by priority, then first come, first served, with bounded
backfilling: a run that does not fit yet may be overtaken by later runs that do fit, but at
most ``max_overtakes`` times by runs that take a kind of resource it needs too; after that
the pool starts nothing behind it that competes with it until it fits (the running ones
drain). A big request therefore waits for a bounded number of small ones, never for ever,
and the machine does not idle while small runs could use it. A run that takes nothing the
blocked one needs (a CPU-only run behind a GPU request) always passes; a run that asks for
nothing is never queued at all.

Cancellation is clean: a waiter cancelled just as capacity is handed to it gives it back.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import anyio.lowlevel

from orchestrator.engine.inventory import Gpu, Inventory
from orchestrator.engine.slots import unless_stopped
from orchestrator.exceptions import ExecutorError
from orchestrator.spec.resources import MILLI, ResourceRequest, format_bytes, format_milli

__all__ = [
    "Assignment",
    "GpuShare",
    "NeverFitsError",
    "ResourcePool",
    "never_fits",
]

#: How often the oldest blocked request may be overtaken by competing ones.
MAX_OVERTAKES = 8


class NeverFitsError(ExecutorError):
    """A request larger than the whole machine: it would wait for ever."""


@dataclass(frozen=True)
class GpuShare:
    index: int
    uuid: str | None
    #: Thousandths of the card (1000: the whole card).
    milli: int

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "share": self.milli / MILLI}


@dataclass(eq=False)
class Assignment:
    """What one run holds until it ends."""

    id: int
    request: ResourceRequest
    gpus: tuple[GpuShare, ...] = ()
    #: The pool hands out GPUs: a run without any sees none (``CUDA_VISIBLE_DEVICES=""``).
    hide_gpus: bool = False
    released: bool = False

    def environment(self) -> dict[str, str]:
        """The variables the run's process gets: its cards by UUID when every one is known,
        else by index with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (the order ``nvidia-smi`` and NVML
        number cards in; CUDA's default order differs). A share of a card is told in
        ``ORCHESTRATOR_GPU_SHARE`` (for ``torch.cuda.set_per_process_memory_fraction``...).
        Nothing at all when the pool hands out no GPUs."""
        if not self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ""} if self.hide_gpus else {}
        if all(g.uuid for g in self.gpus):
            env = {"CUDA_VISIBLE_DEVICES": ",".join(str(g.uuid) for g in self.gpus)}
        else:
            env = {
                "CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in self.gpus),
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            }
        if len(self.gpus) == 1 and self.gpus[0].milli < MILLI:
            env["ORCHESTRATOR_GPU_SHARE"] = format_milli(self.gpus[0].milli)
        return env

    def describe(self) -> dict[str, Any]:
        """JSON-able, for the journal, ``show`` and the API."""
        out: dict[str, Any] = {"gpus": [g.describe() for g in self.gpus]}
        if self.request.cpu_milli:
            out["cpu"] = self.request.cpu
        if self.request.memory:
            out["memory"] = self.request.memory
        return out

    def __str__(self) -> str:
        return given_text(self.describe()) or "no resources"


def given_text(given: Mapping[str, Any]) -> str:
    """What a run was given, short, from its journaled :meth:`Assignment.describe`:
    ``GPU 2 (0.5), 1 CPU, 4Gi`` ("" for nothing)."""
    parts = [
        f"GPU {g['index']}" + (f" ({g['share']:g})" if g.get("share", 1) < 1 else "")
        for g in given.get("gpus", [])
    ]
    if given.get("cpu"):
        parts.append(f"{given['cpu']:g} CPU")
    if given.get("memory"):
        parts.append(format_bytes(given["memory"]))
    return ", ".join(parts)


def _plural(shown: str, what: str) -> str:
    """``1 GPU``, ``0.5 GPU``, ``3 GPUs``."""
    return f"{shown} {what}" if Decimal(shown) <= 1 else f"{shown} {what}s"


def _qualifies(gpu: Gpu, request: ResourceRequest) -> bool:
    if not request.gpu_memory:
        return True
    return gpu.memory is not None and gpu.memory >= request.gpu_memory


def never_fits(request: ResourceRequest, inventory: Inventory) -> str | None:
    """Why ``request`` can never fit ``inventory`` (one line), or None when it can."""
    note = f" ({inventory.notes[0]})" if inventory.notes else ""
    if request.gpu_milli:
        wanted = max(request.whole_gpus, 1)
        cards = [g for g in inventory.gpus if _qualifies(g, request)]
        shown = _plural(format_milli(request.gpu_milli), "GPU")
        if not inventory.gpus:
            return f"needs {shown}, this machine has none{note}"
        if len(cards) < wanted:
            if not request.gpu_memory:
                return f"needs {shown}, this machine has {len(inventory.gpus)}"
            memory = format_bytes(request.gpu_memory)
            unknown = any(g.memory is None for g in inventory.gpus)
            why = "; the memory of cards given by hand is unknown" if unknown else ""
            return (
                f"needs {shown} with at least {memory} each, this machine has {len(cards)}"
                f" such of {len(inventory.gpus)}{why}"
            )
    if request.cpu_milli > inventory.cpu_milli:
        return (
            f"needs {_plural(format_milli(request.cpu_milli), 'CPU')}, this machine has"
            f" {format_milli(inventory.cpu_milli)}"
        )
    if request.memory > inventory.memory:
        return (
            f"needs {format_bytes(request.memory)} of memory, this machine has"
            f" {format_bytes(inventory.memory)}"
        )
    return None


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    request: ResourceRequest = field(compare=False)
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    assignment: Assignment | None = field(compare=False, default=None)
    overtaken: int = field(compare=False, default=0)


class ResourcePool:
    def __init__(self, inventory: Inventory, *, max_overtakes: int = MAX_OVERTAKES) -> None:
        self.inventory = inventory
        self.max_overtakes = max_overtakes
        #: Free thousandths of each card, by position in ``inventory.gpus``.
        self.gpu_free = [MILLI] * len(inventory.gpus)
        self.cpu_free = inventory.cpu_milli
        self.memory_free = inventory.memory
        self.held: dict[int, Assignment] = {}
        self._waiters: list[_Waiter] = []
        #: How many waiters ask for each distinct request (a sweep's runs ask the same).
        self._shapes: Counter[ResourceRequest] = Counter()
        self._ids = itertools.count(1)
        self._seq = itertools.count()

    # ------------------------------------------------------------------ asking
    def fits_ever(self, request: ResourceRequest) -> str | None:
        """Why ``request`` can never fit this machine (one line), or None."""
        return never_fits(request, self.inventory)

    def try_acquire(self, request: ResourceRequest, priority: int = 0) -> Assignment | None:
        """The assignment at once if the request may start now (see the module's docstring),
        else None with nothing booked."""
        if request.is_empty:  # takes nothing, delays no one: never queued
            return self._book(request)
        waiter = self._enqueue(request, priority)
        if waiter.assignment is None:
            self._forget(waiter)
            self._dispatch()
        return waiter.assignment

    async def acquire(self, request: ResourceRequest, priority: int = 0) -> Assignment:
        """Wait until ``request`` may start, then hold it; higher ``priority`` first. Raises
        NeverFitsError at once for a request the machine can never satisfy."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if request.is_empty:  # takes nothing, delays no one: never queued
            assignment = self._book(request)
            assert assignment is not None
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return assignment
        waiter = self._enqueue(request, priority)
        if waiter.assignment is not None:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return waiter.assignment
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.assignment is not None:
                self.release(waiter.assignment)  # handed over just as we were cancelled
            else:
                self._forget(waiter)
                self._dispatch()  # the ones it held back may go now
            raise
        assert waiter.assignment is not None
        return waiter.assignment

    async def acquire_unless(
        self, request: ResourceRequest, stopped: anyio.Event, priority: int = 0
    ) -> Assignment | None:
        """Like :meth:`acquire`, but None (nothing held) once ``stopped`` is set first."""
        if stopped.is_set():
            return None
        got = self.try_acquire(request, priority)
        if got is not None:
            return got
        return await unless_stopped(stopped, lambda: self.acquire(request, priority))

    def release(self, assignment: Assignment) -> None:
        """Give back what ``assignment`` holds and serve the waiters; a second call does
        nothing."""
        if assignment.released or self.held.pop(assignment.id, None) is None:
            assignment.released = True
            return
        assignment.released = True
        position = {g.index: i for i, g in enumerate(self.inventory.gpus)}
        for share in assignment.gpus:
            self.gpu_free[position[share.index]] += share.milli
        self.cpu_free += assignment.request.cpu_milli
        self.memory_free += assignment.request.memory
        self._dispatch()

    # ------------------------------------------------------------------ looking
    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def describe(self) -> dict[str, Any]:
        """The machine and what is free now (JSON-able)."""
        return {
            **self.inventory.describe(),
            "free": {
                "gpus": [
                    {"index": g.index, "free": free / MILLI}
                    for g, free in zip(self.inventory.gpus, self.gpu_free, strict=True)
                ],
                "cpu": self.cpu_free / MILLI,
                "memory": self.memory_free,
            },
            "held": len(self.held),
            "waiting": self.waiting,
        }

    # ------------------------------------------------------------------ booking
    def _place(self, request: ResourceRequest) -> list[tuple[int, int]] | None:
        """(card position, thousandths) for each card the request would take now, or None."""
        if request.cpu_milli > self.cpu_free or request.memory > self.memory_free:
            return None
        if not request.gpu_milli:
            return []
        cards = [(i, g) for i, g in enumerate(self.inventory.gpus) if _qualifies(g, request)]
        if request.gpu_milli <= MILLI:
            fitting = [(self.gpu_free[i], g.memory or 0, g.index, i) for i, g in cards]
            best = min((c for c in fitting if c[0] >= request.gpu_milli), default=None)
            return None if best is None else [(best[3], request.gpu_milli)]
        free = sorted((g.memory or 0, g.index, i) for i, g in cards if self.gpu_free[i] == MILLI)
        if len(free) < request.whole_gpus:
            return None
        return [(i, MILLI) for _, _, i in free[: request.whole_gpus]]

    def _book(self, request: ResourceRequest) -> Assignment | None:
        place = self._place(request)
        if place is None:
            return None
        for i, milli in place:
            self.gpu_free[i] -= milli
        self.cpu_free -= request.cpu_milli
        self.memory_free -= request.memory
        gpus = tuple(
            GpuShare(self.inventory.gpus[i].index, self.inventory.gpus[i].uuid, milli)
            for i, milli in place
        )
        assignment = Assignment(next(self._ids), request, gpus, hide_gpus=bool(self.inventory.gpus))
        self.held[assignment.id] = assignment
        return assignment

    def _enqueue(self, request: ResourceRequest, priority: int) -> _Waiter:
        reason = self.fits_ever(request)
        if reason is not None:
            raise NeverFitsError(reason)
        waiter = _Waiter(-priority, next(self._seq), request)
        bisect.insort(self._waiters, waiter)
        self._shapes[request] += 1
        self._dispatch()
        return waiter

    def _forget(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        self._shapes[waiter.request] -= 1
        if not self._shapes[waiter.request]:
            del self._shapes[waiter.request]

    def _dispatch(self) -> None:
        """Serve waiters in order; a later one may overtake a blocked one it competes with
        only while that one has been overtaken fewer than ``max_overtakes`` times."""
        blocked: list[_Waiter] = []
        #: Requests that cannot go in this pass (they did not fit, or were held back): an
        #: equal one later cannot either (capacity only shrinks and ``blocked`` only grows).
        stuck: set[ResourceRequest] = set()
        served: list[_Waiter] = []
        for waiter in self._waiters:
            if len(stuck) == len(self._shapes):
                break  # every kind of request still waiting is stuck: none behind can go
            if waiter.request in stuck or self._place(waiter.request) is None:
                stuck.add(waiter.request)
                blocked.append(waiter)
                continue
            rivals = [b for b in blocked if _competes(waiter.request, b.request)]
            if any(b.overtaken >= self.max_overtakes for b in rivals):
                stuck.add(waiter.request)
                blocked.append(waiter)
                continue
            for rival in rivals:
                rival.overtaken += 1
            waiter.assignment = self._book(waiter.request)
            served.append(waiter)
        for waiter in served:
            self._forget(waiter)
            waiter.event.set()


def _kinds(request: ResourceRequest) -> Iterable[str]:
    if request.gpu_milli:
        yield "gpu"
    if request.cpu_milli:
        yield "cpu"
    if request.memory:
        yield "memory"


def _competes(request: ResourceRequest, head: ResourceRequest) -> bool:
    """Taking ``request`` could delay ``head``: they share a kind of resource."""
    return not set(_kinds(request)).isdisjoint(_kinds(head))
