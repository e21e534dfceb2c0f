"""Small wording helpers shared by everything that prints (no imports: ``plan`` and the
history commands use it without loading the engine)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

__all__ = ["plural", "write_warnings"]


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def write_warnings(err: IO[str], warnings: Iterable[str]) -> None:
    """The plan's warnings (``-P`` the matrix overrides), one line each, as ``plan``, ``run``,
    ``resume`` and ``submit`` all print them."""
    for warning in warnings:
        err.write(f"orchestrator: warning: {warning}\n")
