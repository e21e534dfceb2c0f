"""What this machine has to hand out: GPUs, CPU cores and memory.

GPUs come from, in order: ``--gpus`` / ``ORCHESTRATOR_GPUS`` (a list of indexes, or ``none``),
NVML (``pynvml``, from the optional ``gpu`` extra, imported only here), ``nvidia-smi`` when it
is on ``PATH``, else none. A list given by hand keeps what detection knows of those cards
(uuid, name, memory); an index detection does not know is an error, unless nothing was
detected (then the cards are taken on trust, memory unknown). An inherited
``CUDA_VISIBLE_DEVICES`` narrows what is detected to the cards it names, so an orchestrator
started on a share of a machine hands out only that share.

A detection that fails (no driver, a hung or garbled ``nvidia-smi``) gives no GPUs and one
line in ``Inventory.notes``: CPU-only sweeps still run, and a GPU request that can then never
fit says why.

CPUs are the cores this process may run on (``os.sched_getaffinity``), memory is
``MemTotal`` of ``/proc/meminfo`` (else ``sysconf``); ``--cpus`` and ``--memory`` (Kubernetes
quantities) override both.
"""

from __future__ import annotations

import csv
import importlib
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from orchestrator.exceptions import SpecError
from orchestrator.spec.resources import MILLI, format_bytes, format_milli, parse_quantity

__all__ = [
    "GPUS_ENV",
    "Gpu",
    "Inventory",
    "detect_gpus",
    "machine_inventory",
    "parse_gpu_list",
]

GPUS_ENV = "ORCHESTRATOR_GPUS"
NVIDIA_SMI_ARGS = ("--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits")
#: ``nvidia-smi`` gets this long and this much output (a real one prints ~100 bytes a card).
SMI_TIMEOUT = 10.0
SMI_MAX_OUTPUT = 1 << 20


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str | None = None
    name: str | None = None
    #: Total memory in bytes; None when unknown (a card given by hand, "[N/A]").
    memory: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "name": self.name, "memory": self.memory}


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...] = ()
    cpu_milli: int = MILLI
    memory: int = 0
    #: Where the GPUs came from: "nvml", "nvidia-smi", "--gpus", "ORCHESTRATOR_GPUS", "none".
    gpu_source: str = "none"
    #: One line each: what the user should hear (a failed detection).
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        """JSON-able, for the journal, ``show`` and the API."""
        return {
            "gpus": [g.describe() for g in self.gpus],
            "gpu_source": self.gpu_source,
            "cpu": self.cpu_milli / MILLI,
            "memory": self.memory,
        }

    def __str__(self) -> str:
        cards = ", ".join(
            f"{g.index}" + (f" ({format_bytes(g.memory)})" if g.memory else "") for g in self.gpus
        )
        many = "GPUs" if len(self.gpus) > 1 else "GPU"
        gpus = f"{len(self.gpus)} {many} ({cards})" if self.gpus else "no GPU"
        return f"{gpus}, {format_milli(self.cpu_milli)} CPU, {format_bytes(self.memory)} memory"


# --------------------------------------------------------------------------- GPU lists by hand
def parse_gpu_list(text: str, field: str) -> tuple[int, ...] | None:
    """``0,1,3`` -> (0, 1, 3); ``none`` or empty -> (); anything else a one-line SpecError.
    Returns None for ``all`` (the same as not giving the option)."""
    value = text.strip()
    if value.lower() in ("none", ""):
        return ()
    if value.lower() == "all":
        return None
    indexes: list[int] = []
    for part in value.split(","):
        item = part.strip()
        if not item.isdigit() or len(item) > 4:
            raise SpecError(
                f"expected GPU indexes such as 0,1,3, or none, got {text!r}", field=field
            )
        if int(item) in indexes:
            raise SpecError(f"GPU {int(item)} is listed twice in {text!r}", field=field)
        indexes.append(int(item))
    return tuple(indexes)


def _from_list(indexes: Sequence[int], detected: Sequence[Gpu], field: str) -> tuple[Gpu, ...]:
    if not detected:
        return tuple(Gpu(i) for i in indexes)
    known = {g.index: g for g in detected}
    missing = [i for i in indexes if i not in known]
    if missing:
        have = ", ".join(str(i) for i in sorted(known))
        raise SpecError(f"no GPU {missing[0]} on this machine (it has {have})", field=field)
    return tuple(known[i] for i in indexes)


def _visible(environ: Mapping[str, str], detected: tuple[Gpu, ...]) -> tuple[Gpu, ...]:
    """The detected cards an inherited ``CUDA_VISIBLE_DEVICES`` leaves visible."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return detected
    wanted = [item.strip() for item in value.split(",") if item.strip()]
    out = []
    for item in wanted:
        match = [g for g in detected if str(g.index) == item or g.uuid == item]
        if not match:
            break  # CUDA too stops at the first entry it cannot resolve
        out.append(match[0])
    return tuple(out)


# --------------------------------------------------------------------------- detection
def detect_gpus(environ: Mapping[str, str]) -> tuple[tuple[Gpu, ...], str, tuple[str, ...]]:
    """(cards, source, notes): NVML first, then ``nvidia-smi``; none when neither works."""
    notes: list[str] = []
    try:
        return _nvml(), "nvml", ()
    except ImportError:
        pass
    except Exception as exc:  # pynvml raises its own NVMLError_* classes
        notes.append(f"NVML found no GPU ({type(exc).__name__}: {exc})")
    smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if smi is None:
        return (), "none", tuple(notes)
    try:
        return parse_smi(_run_smi(smi)), "nvidia-smi", ()
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        notes.append(f"nvidia-smi found no GPU: {exc}")
        return (), "none", tuple(notes)


def _nvml() -> tuple[Gpu, ...]:
    # The optional ``gpu`` extra (nvidia-ml-py), untyped: looked up by name.
    pynvml: Any = importlib.import_module("pynvml")

    pynvml.nvmlInit()
    try:
        cards = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid, name = pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            cards.append(Gpu(i, _text(uuid), _text(name), memory))
        return tuple(cards)
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _run_smi(path: str) -> str:
    """``nvidia-smi``'s output, within SMI_TIMEOUT and SMI_MAX_OUTPUT (else ValueError)."""
    proc = subprocess.Popen(
        [path, *NVIDIA_SMI_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SMI_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ValueError(f"no answer within {SMI_TIMEOUT:g}s")
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > SMI_MAX_OUTPUT:
                    raise ValueError(f"more than {SMI_MAX_OUTPUT} bytes of output")
                chunks.append(chunk)
        code = proc.wait(max(deadline - time.monotonic(), 0.1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if code != 0:
        raise ValueError(f"exit status {code}")
    return b"".join(chunks).decode(errors="replace")


def parse_smi(text: str) -> tuple[Gpu, ...]:
    """``index, uuid, name, memory.total`` lines (MiB, no units) as cards; ValueError on a
    line that is not that."""
    cards = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row:
            continue
        if len(row) < 4 or not row[0].strip().isdigit():
            raise ValueError(f"unexpected line {', '.join(row)[:80]!r}")
        index, uuid, memory = int(row[0]), row[1].strip(), row[-1].strip()
        name = ", ".join(r.strip() for r in row[2:-1])
        mib = Decimal(memory) if memory.replace(".", "", 1).isdigit() else None
        cards.append(Gpu(index, uuid or None, name or None, int(mib * 2**20) if mib else None))
    if len({g.index for g in cards}) != len(cards):
        raise ValueError("the same index twice")
    return tuple(cards)


# --------------------------------------------------------------------------- CPUs and memory
def machine_cpu_milli() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    return max(count, 1) * MILLI


def machine_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------- all together
def _gpus(
    indexes: tuple[int, ...] | None, where: str, env: Mapping[str, str]
) -> tuple[tuple[Gpu, ...], str, tuple[str, ...]]:
    """The cards to hand out: a list given by hand (``none`` detects nothing), else what
    detection finds that an inherited ``CUDA_VISIBLE_DEVICES`` leaves visible."""
    if indexes == ():
        return (), "none", ()
    detected, source, notes = detect_gpus(env)
    if indexes is None:
        return _visible(env, detected), source, notes
    return _from_list(indexes, detected, where), where, notes


def machine_inventory(
    *,
    gpus: str | None = None,
    cpus: str | None = None,
    memory: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Inventory:
    """This machine's inventory, with the command line's overrides (``--gpus``, ``--cpus``,
    ``--memory``; ``ORCHESTRATOR_GPUS`` when ``--gpus`` is not given). Bad values are a
    one-line SpecError naming the option."""
    env = os.environ if environ is None else environ
    given, where = (gpus, "--gpus") if gpus is not None else (env.get(GPUS_ENV), GPUS_ENV)
    indexes = parse_gpu_list(given, where) if given is not None else None
    cards, source, notes = _gpus(indexes, where, env)
    inventory = Inventory(cards, machine_cpu_milli(), machine_memory(), source, notes)
    if cpus is not None:
        milli = int(parse_quantity(cpus, "--cpus") * MILLI)
        if milli <= 0:
            raise SpecError(f"expected more than 0 CPUs, got {cpus!r}", field="--cpus")
        inventory = replace(inventory, cpu_milli=milli)
    if memory is not None:
        size = int(parse_quantity(memory, "--memory"))
        if size <= 0:
            raise SpecError(f"expected more than 0 bytes, got {memory!r}", field="--memory")
        inventory = replace(inventory, memory=size)
    return inventory
