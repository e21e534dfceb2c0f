"""Talking to a running daemon over its Unix socket (httpx), when there is one.

Commands that can be served either way (``ls``, ``show``, ``logs -f``, ``resume``, ``rerun``)
ask :func:`daemon_client` first: a client when the home folder's daemon runs, else None and
they read the journal themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.store.layout import daemon_info_path

if TYPE_CHECKING:
    import httpx

__all__ = ["daemon_client", "daemon_info", "unix_client"]


def daemon_info(home: Path) -> dict[str, Any] | None:
    """The running daemon's socket, pid and (for TCP) port and token, or None."""
    try:
        info: dict[str, Any] = json.loads(daemon_info_path(home).read_text())
    except (OSError, ValueError):
        return None
    return info if Path(info.get("socket", "")).exists() else None


def unix_client(info: dict[str, Any]) -> httpx.Client:
    import httpx

    transport = httpx.HTTPTransport(uds=info["socket"])
    return httpx.Client(
        transport=transport, base_url="http://daemon", timeout=httpx.Timeout(10, read=None)
    )


def daemon_client(home: Path) -> httpx.Client | None:
    """A client of the daemon serving ``home`` (use it with ``with``), or None if none runs."""
    info = daemon_info(home)
    return unix_client(info) if info is not None else None
