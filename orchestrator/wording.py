"""Small wording helpers shared by everything that prints (no imports: ``plan`` and the
history commands use it without loading the engine)."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
