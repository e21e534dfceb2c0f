"""A run's exit status as its supervisor recorded it: what crash recovery trusts.

``exit_status.json`` in the run's folder is created empty and locked (``flock``) by the
orchestrator when it prepares the run (:func:`create_exit_status`), handed to the run supervisor
(:mod:`orchestrator.executors.supervisor`) with the run, and filled and unlocked by the
supervisor when the run exits, before it is reaped. So a locked file means a supervisor still
holds the run (after a crash it may be killing it: wait for it); an unlocked, filled one is the
final word; a missing, empty or unreadable one means nobody saw the run end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.executors.supervisor import STATUS_FILE

__all__ = ["ExitStatus", "create_exit_status", "read_exit_status"]

#: Seconds between looks at a status file a supervisor still holds.
_POLL_S = 0.01


@dataclass(frozen=True)
class ExitStatus:
    """How a run's process ended."""

    #: Its exit code; negative: killed by that signal.
    exit_code: int
    #: The supervisor killed it because its orchestrator was gone.
    orphaned: bool


def create_exit_status(run_dir: Path) -> int:
    """Create the run's status file empty (a retry's old status goes) and lock it; the
    descriptor is for the supervisor (the lock lasts while any copy of it is open)."""
    fd = os.open(run_dir / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_exit_status(run_dir: Path, deadline: float) -> ExitStatus | None:
    """The recorded exit status of the run in ``run_dir``, or None when there is none; waits
    while a supervisor still holds the file, until ``deadline`` (a ``time.monotonic()``)."""
    try:
        fd = os.open(run_dir / STATUS_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(_POLL_S)
        data = os.read(fd, 4096)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        record = json.loads(data)
        return ExitStatus(int(record["exit_code"]), bool(record["orphaned"]))
    except (ValueError, KeyError, TypeError):
        return None
