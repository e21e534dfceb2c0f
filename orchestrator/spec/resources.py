"""What one run needs of the machine, read from ``container.resources`` as Kubernetes writes it.

Quantities follow Kubernetes' grammar (``500m``, ``2``, ``0.5``, ``4Gi``, ``512M``, ``1e3``,
``129e6``): a signed decimal number, then a binary suffix (``Ki`` ... ``Ei``), a decimal suffix
(``m``, ``k``, ``M`` ... ``E``) or a decimal exponent (``e3``). They are read exactly (``Decimal``)
and kept as integers: milli-CPUs, milli-GPUs and bytes, so that the slot bookkeeping adds and
subtracts without floating-point drift.

Which value counts, per key: ``limits`` when it names the key, else ``requests``. For
``nvidia.com/gpu`` this is Kubernetes' own rule (limits alone suffice; both must then be
equal). For ``cpu`` and ``memory`` Kubernetes schedules on requests; admitting on the limit
instead is the conservative choice for a machine without cgroups in between: a run is let in
only when what it may use is free, so runs that reach their limits together still fit.

The keys with a local meaning:

``nvidia.com/gpu``
    whole cards (``1``, ``2``...) or a share of one card in ``(0, 1]`` in steps of 0.001
    (``0.5``, ``0.25``, ``500m``): several runs share a card while their shares add up to at
    most 1. A share above 1 that is not whole (``1.5``) is refused: a run cannot hold half of a
    second card.
``orchestrator/gpu-memory``
    the least memory each of the run's cards must have (``40Gi``): on a machine with cards of
    different sizes the run lands only on a card that big. It is a placement filter, not a
    metered resource, so it lives under our own prefix: a vendor name such as HAMi's
    ``nvidia.com/gpumem`` means "carve this much out of a card" on clusters that meter it.
``cpu``, ``memory``
    cores and bytes, booked against the machine's (or ``--cpus`` / ``--memory``).

Other keys (``ephemeral-storage``, ``hugepages-2Mi``, other devices) must still be valid
quantities; they have no local meaning and are listed in ``ResourceRequest.ignored``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m

__all__ = [
    "GPU_KEY",
    "GPU_MEMORY_KEY",
    "MILLI",
    "ResourceRequest",
    "format_bytes",
    "format_milli",
    "parse_quantity",
    "request_from_resources",
    "spec_request",
]

GPU_KEY = "nvidia.com/gpu"
GPU_MEMORY_KEY = "orchestrator/gpu-memory"
#: Milli-units in one CPU core or one GPU.
MILLI = 1000

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?[0-9]{1,3})|(?P<decimal>[mkMGTPE]?))"
)
#: Longer strings are not quantities anyone writes (and a huge exponent must not be computed).
_MAX_TEXT = 64


def parse_quantity(value: Any, field: str) -> Decimal:
    """A Kubernetes quantity (a YAML number or a string such as ``500m`` or ``4Gi``) as an exact
    non-negative ``Decimal``; anything else is a one-line ``SpecError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(f"expected a quantity such as 2, 500m or 4Gi, got {value!r}", field=field)
    text = repr(value) if isinstance(value, float) else str(value)
    match = _QUANTITY.fullmatch(text.strip()) if len(text) <= _MAX_TEXT else None
    if match is None or (isinstance(value, float) and not math.isfinite(value)):
        raise SpecError(f"expected a quantity such as 2, 500m or 4Gi, got {value!r}", field=field)
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise SpecError(f"expected a quantity, got {value!r}", field=field) from None
    if match["binary"] is not None:
        amount = number * Decimal(1024) ** _BINARY[match["binary"]]
    elif match["exponent"] is not None:
        amount = number.scaleb(int(match["exponent"]))
    else:
        amount = number.scaleb(_DECIMAL[match["decimal"]])
    if amount < 0:
        raise SpecError(f"expected a quantity of at least 0, got {value!r}", field=field)
    return amount


@dataclass(frozen=True)
class ResourceRequest:
    """What one run needs; all zero means "nothing to book" (such a run never waits)."""

    #: GPUs in thousandths: 500 is half a card, 2000 two whole cards.
    gpu_milli: int = 0
    #: CPU cores in thousandths.
    cpu_milli: int = 0
    #: Bytes of memory.
    memory: int = 0
    #: The least memory, in bytes, each of the run's cards must have (0: any card).
    gpu_memory: int = 0
    #: Keys of ``container.resources`` that have no local meaning.
    ignored: tuple[str, ...] = ()

    @property
    def gpus(self) -> float:
        return self.gpu_milli / MILLI

    @property
    def cpu(self) -> float:
        return self.cpu_milli / MILLI

    @property
    def whole_gpus(self) -> int:
        """Cards held whole (0 for a share of one card)."""
        return self.gpu_milli // MILLI if self.gpu_milli >= MILLI else 0

    @property
    def is_empty(self) -> bool:
        return not (self.gpu_milli or self.cpu_milli or self.memory)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (only what is asked for)."""
        out: dict[str, Any] = {}
        if self.gpu_milli:
            out["gpus"] = self.gpus
        if self.gpu_memory:
            out["gpu_memory"] = self.gpu_memory
        if self.cpu_milli:
            out["cpu"] = self.cpu
        if self.memory:
            out["memory"] = self.memory
        return out

    def __str__(self) -> str:
        parts = []
        if self.gpu_milli:
            parts.append(f"{format_milli(self.gpu_milli)} GPU")
            if self.gpu_memory:
                parts[-1] += f" (>= {format_bytes(self.gpu_memory)} each)"
        if self.cpu_milli:
            parts.append(f"{format_milli(self.cpu_milli)} CPU")
        if self.memory:
            parts.append(f"{format_bytes(self.memory)} memory")
        return ", ".join(parts) or "nothing"


def format_milli(milli: int) -> str:
    """``1500`` -> ``1.5``, ``2000`` -> ``2``."""
    return (
        f"{Decimal(milli) / MILLI:f}".rstrip("0").rstrip(".")
        if milli % MILLI
        else str(milli // MILLI)
    )


def format_bytes(size: int) -> str:
    """Bytes as the largest binary unit that keeps one decimal: ``4Gi``, ``1.5Gi``, ``512Mi``."""
    for suffix, power in (("Ei", 6), ("Pi", 5), ("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
        unit = 1024**power
        if size >= unit:
            shown = f"{size / unit:.1f}".rstrip("0").rstrip(".")
            return f"{shown}{suffix}"
    return f"{size}B"


def _to_milli(amount: Decimal) -> int:
    """Thousandths, rounded up (Kubernetes rounds a CPU finer than 1m up to 1m)."""
    return math.ceil(amount * MILLI)


def _gpu_milli(amount: Decimal, field: str) -> int:
    if amount > 1 and amount != amount.to_integral_value():
        raise SpecError(
            f"a request above 1 GPU must be whole cards, got {amount.normalize():f}", field=field
        )
    if amount * MILLI != (amount * MILLI).to_integral_value():
        raise SpecError(
            f"a GPU share must be a multiple of 0.001, got {amount.normalize():f}", field=field
        )
    return int(amount * MILLI)


def _pick(resources: m.Resources, key: str, field: str) -> tuple[Decimal | None, Decimal | None]:
    """The key's value in limits and in requests (None where absent), each checked."""
    limits, requests = resources.limits or {}, resources.requests or {}
    limit = parse_quantity(limits[key], f"{field}.limits.{key}") if key in limits else None
    request = parse_quantity(requests[key], f"{field}.requests.{key}") if key in requests else None
    return limit, request


def request_from_resources(
    resources: m.Resources | None, field: str = "run.container.resources"
) -> ResourceRequest:
    """The request in ``container.resources`` (see the module's docstring for the rules)."""
    if resources is None:
        return ResourceRequest()
    chosen: dict[str, Decimal] = {}
    keys = dict.fromkeys([*(resources.limits or {}), *(resources.requests or {})])
    for key in keys:
        if not isinstance(key, str):
            raise SpecError(f"expected a resource name, got {key!r}", field=field)
        limit, request = _pick(resources, key, field)
        if limit is not None and request is not None:
            if key in (GPU_KEY, GPU_MEMORY_KEY) and limit != request:
                raise SpecError(
                    f"requests ({request.normalize():f}) and limits ({limit.normalize():f})"
                    " must be equal",
                    field=f"{field}.requests.{key}",
                )
            if request > limit:
                raise SpecError(
                    f"requests ({request.normalize():f}) must not exceed limits"
                    f" ({limit.normalize():f})",
                    field=f"{field}.requests.{key}",
                )
        value = limit if limit is not None else request
        assert value is not None
        chosen[key] = value
    where = "limits" if resources.limits and GPU_KEY in resources.limits else "requests"
    gpu_milli = _gpu_milli(chosen.get(GPU_KEY, Decimal(0)), f"{field}.{where}.{GPU_KEY}")
    gpu_memory = math.ceil(chosen.get(GPU_MEMORY_KEY, Decimal(0)))
    if gpu_memory and not gpu_milli:
        raise SpecError(f"{GPU_MEMORY_KEY} needs {GPU_KEY} too", field=field)
    return ResourceRequest(
        gpu_milli=gpu_milli,
        cpu_milli=_to_milli(chosen.get("cpu", Decimal(0))),
        memory=math.ceil(chosen.get("memory", Decimal(0))),
        gpu_memory=gpu_memory,
        ignored=tuple(k for k in chosen if k not in (GPU_KEY, GPU_MEMORY_KEY, "cpu", "memory")),
    )


def spec_request(component: m.Component) -> ResourceRequest:
    """The request of a component's job (nothing for a component that runs no container)."""
    run = component.run
    container = getattr(run, "container", None)
    if not isinstance(container, m.Container):
        return ResourceRequest()
    return request_from_resources(container.resources)
