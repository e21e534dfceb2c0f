"""Talking to a running daemon over its Unix socket (httpx), when there is one.

Commands that can be served either way (``ls``, ``show``, ``logs -f``, ``resume``, ``rerun``)
ask :func:`daemon_client` first: a client when the home folder's daemon answers, else None and
they read the journal themselves. Commands that need the daemon (``submit``, ``stop``) ask
:func:`require_daemon`, which says in one line why there is none.

A daemon killed with ``kill -9`` leaves its ``daemon.json`` and socket file behind; nobody
listens on that socket any more, so connecting to it is refused at once. That refusal, not
the file, says whether a daemon runs (a pid could have been recycled). The stale files stay
until the next daemon replaces them: they are how ``submit`` tells "the daemon is gone" from
"no daemon was ever started". A daemon that dies in the middle of a request (or of a followed
log) is one line too: every transport error becomes UnavailableError.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.exceptions import NotFoundError, UnavailableError
from orchestrator.store.layout import daemon_info_path

if TYPE_CHECKING:
    import httpx

__all__ = [
    "answers",
    "daemon_client",
    "daemon_info",
    "gone_message",
    "require_daemon",
    "start_command",
    "unix_client",
]

#: Seconds a connection attempt may take before the daemon counts as there but busy.
PROBE_TIMEOUT_S = 2.0


def daemon_info(home: Path) -> dict[str, Any] | None:
    """What the home folder's daemon wrote when it started (socket, pid; for TCP host, port
    and token), or None when no daemon has written it (or it stopped cleanly). It may be a
    dead daemon's: :func:`answers` tells."""
    try:
        info = json.loads(daemon_info_path(home).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("socket"), str) else None


def answers(info: dict[str, Any]) -> bool:
    """Does someone listen on the daemon's socket? Refused (or no socket file): nobody
    does, the daemon is gone. Any other outcome (a timeout: it is busy) counts as there, and
    the request itself will tell."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(info["socket"])
    except (ConnectionRefusedError, FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True


def start_command(home: Path) -> str:
    """The command that starts the daemon of ``home``."""
    return f"orchestrator daemon --home {home}"


def gone_message(home: Path, info: dict[str, Any], consequence: str = "") -> str:
    """One line: the daemon that wrote ``info`` no longer answers (``consequence``: what
    that means for the command), and how to start one."""
    return (
        f"the daemon of {home} is gone (pid {info.get('pid')} no longer answers on "
        f"{info['socket']}){consequence}; start it again with `{start_command(home)}`"
    )


def unix_client(info: dict[str, Any]) -> httpx.Client:
    """A client of the daemon's Unix socket whose transport errors are one-line
    UnavailableErrors (the daemon died mid-request, or mid-stream)."""
    import httpx

    from orchestrator.daemon.transport import OneLineErrors

    transport = OneLineErrors(httpx.HTTPTransport(uds=info["socket"]), info["socket"])
    return httpx.Client(
        transport=transport, base_url="http://daemon", timeout=httpx.Timeout(10, read=None)
    )


def daemon_client(home: Path) -> httpx.Client | None:
    """A client of the daemon serving ``home`` (use it with ``with``), or None when none
    answers (none was started, or it is gone: read the journal instead)."""
    info = daemon_info(home)
    return unix_client(info) if info is not None and answers(info) else None


def require_daemon(home: Path, *, gone: str = "") -> httpx.Client:
    """A client of the daemon serving ``home``: NotFoundError when none was started,
    UnavailableError when the one that was is gone (killed: it no longer answers; ``gone``
    says what that means for the command)."""
    info = daemon_info(home)
    if info is None:
        raise NotFoundError(
            f"no daemon is running for {home} (start one with `{start_command(home)}`)"
        )
    if not answers(info):
        raise UnavailableError(gone_message(home, info, gone))
    return unix_client(info)
