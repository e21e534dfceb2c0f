"""Talking to a running daemon over its Unix socket (httpx), when there is one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["daemon_info", "unix_client"]


def daemon_info(home: Path) -> dict[str, Any] | None:
    """The running daemon's socket, pid and (for TCP) port and token, or None."""
    try:
        info: dict[str, Any] = json.loads((home / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
    return info if Path(info.get("socket", "")).exists() else None


def unix_client(info: dict[str, Any]) -> Any:
    import httpx

    transport = httpx.HTTPTransport(uds=info["socket"])
    return httpx.Client(
        transport=transport, base_url="http://daemon", timeout=httpx.Timeout(10, read=None)
    )
