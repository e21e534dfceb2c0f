"""``orchestrator daemon``: sockets, lock, token, and the shutdown order.

One uvicorn ``Server`` serves pre-bound sockets: a Unix socket in the home folder (born 0600
under a 0700 folder; ``uvicorn.Config(uds=...)`` would make it 0666), and optionally a TCP
socket (created with ``IPPROTO_TCP``, or asyncio skips TCP_NODELAY and each request waits
44 ms) guarded by a bearer token kept in ``daemon.json`` (0600). An flock on ``daemon.lock``
keeps a second daemon from stealing the socket. The host owns SIGTERM/SIGINT (uvicorn would
re-raise them after ``serve()``): first stop taking work and let runs finish for the grace
period, then stop them, close every SSE stream, and only then stop the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import anyio
import uvicorn

from orchestrator.daemon.app import MAX_HEADERS, build_app
from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import SweepManager
from orchestrator.diagnostics import LineLogger
from orchestrator.diagnostics import configure as configure_diagnostics
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.recovery import open_journal
from orchestrator.exceptions import StoreError
from orchestrator.store.layout import journal_path

__all__ = ["serve", "socket_path"]

_MAX_UNIX_PATH = 107


def socket_path(home: Path) -> Path:
    """The daemon's socket; a short per-user path when the home folder's is too long."""
    path = home / "daemon.sock"
    if len(str(path)) <= _MAX_UNIX_PATH:
        return path
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"orchestrator-{os.getuid()}-{digest}.sock"


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon owns SIGINT/SIGTERM


def _bind_unix(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)  # a stale socket: safe, we hold the lock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


async def _main(
    home: Path,
    sockets: list[socket.socket],
    token: str | None,
    max_runs: int,
    grace: float,
    err: IO[str],
) -> None:
    log = configure_diagnostics(err)
    warnings = LineLogger(log, "warning").as_stream()  # for the functions that take ``err``
    hub = Hub()  # first, so that followers also see what recovery did
    journal = open_journal(journal_path(home), warnings, announce=hub.publish)
    try:

        def report(message: str) -> None:
            log.error(message)

        plugins = PluginHost.installed(warnings)
        manager = SweepManager(
            home,
            journal,
            max_runs=max_runs,
            grace=grace,
            publish=hub.publish,
            plugins=plugins,
            report=report,
        )
        config = uvicorn.Config(
            build_app(manager, hub, home, token),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            h11_max_incomplete_event_size=MAX_HEADERS + 4096,
        )
        server = _EmbeddedServer(config)
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            for sweep_id in manager.resume_lost():
                log.info(f"resuming sweep {sweep_id[:12]} (its daemon was lost)", sweep_id=sweep_id)
            tg.start_soon(server.serve, sockets)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                log.info("ready", pid=os.getpid())  # scripts wait for it: is_ready_record()
                async for signum in signals:
                    name = signal.Signals(signum).name
                    log.info(
                        f"{name}: stopping; runs get {grace:g}s to finish", signal=name, grace=grace
                    )
                    break
            await manager.shutdown(grace)
            hub.close()
            server.should_exit = True
    finally:
        journal.close()


def serve(
    home: Path,
    *,
    host: str | None,
    port: int | None,
    allow_remote: bool,
    max_runs: int,
    grace: float,
    err: IO[str],
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns the exit code."""
    if host is not None and host not in ("127.0.0.1", "localhost", "::1") and not allow_remote:
        raise StoreError(
            f"refusing to listen on {host}: pass --allow-remote (a token is "
            "always required over TCP)"
        )
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    lock = open(home / "daemon.lock", "w")  # noqa: SIM115 - held for the daemon's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreError(f"a daemon is already running for {home}") from None
    sock_path = socket_path(home)
    sockets = [_bind_unix(sock_path)]
    info: dict[str, object] = {"pid": os.getpid(), "socket": str(sock_path)}
    token = None
    if host is not None or port is not None:
        tcp = _bind_tcp(host or "127.0.0.1", port or 0)
        sockets.append(tcp)
        token = secrets.token_urlsafe(32)
        info.update(host=tcp.getsockname()[0], port=tcp.getsockname()[1], token=token)
    _write_private(home / "daemon.json", json.dumps(info))
    try:
        anyio.run(_main, home, sockets, token, max_runs, grace, err)
    finally:
        for sock in sockets:
            sock.close()
        sock_path.unlink(missing_ok=True)
        (home / "daemon.json").unlink(missing_ok=True)
        lock.close()
    return 0
