"""Waiting for processes in tests without polling: a pidfd says when one has exited."""

from __future__ import annotations

import os
import select

__all__ = ["alive", "gone_within"]


def gone_within(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, no polling) until ``pid`` has exited; False if it is still alive.

    A SIGKILL is delivered asynchronously, so a test must wait for the death it caused.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable) or not alive(pid)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False
