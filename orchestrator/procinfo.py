"""Is a process still the one we started? A pid plus its start time answers it.

Pids are recycled; the kernel's start time of a process (``/proc/<pid>/stat`` field 22, in
clock ticks since boot) is not, so (pid, start time) names one process for good.
"""

from __future__ import annotations

import contextlib
import os
import signal

__all__ = [
    "forget_start_time",
    "is_same_process",
    "signal_group",
    "start_time",
    "tell_start_time",
]


#: This process's own start time, read once (keyed by pid: a forked child has its own).
_OWN: dict[int, int | None] = {}
#: Start times told by a process's parent before it could reap it (the run supervisor), for
#: as long as the teller vouches for them.
_TOLD: dict[int, int] = {}


def tell_start_time(pid: int, started: int | None) -> None:
    """Answer :func:`start_time` for ``pid`` with ``started`` (as its parent read it), until
    :func:`forget_start_time`: no read of ``/proc`` while the caller records the process.
    Nothing is told when ``started`` is None."""
    if started is not None:
        _TOLD[pid] = started


def forget_start_time(pid: int) -> None:
    _TOLD.pop(pid, None)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    told = _TOLD.get(pid)
    if told is not None:
        return told
    if pid == os.getpid():
        if pid not in _OWN:
            _OWN[pid] = _read_start_time(pid)
        return _OWN[pid]
    return _read_start_time(pid)


def _read_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    if fields and fields[0] in (b"Z", b"X"):
        return None  # a zombie has finished; only its exit status is left
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_same_process(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` is alive and started at ``started`` (not a recycled pid)."""
    if not pid:
        return False
    if not os.path.isdir("/proc/self"):  # no procfs: existence is all we can check
        return _exists(pid)
    current = start_time(pid)
    if current is None:
        return False
    return started is None or current == started


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
