"""``orchestrator daemon``: sockets, lock, token, connection limits, and the shutdown order.

Files. The home folder is created 0700 when it is new and never chmodded when it exists (it
may be the user's, shared on purpose). What must stay private lives in ``HOME/daemon/``,
created 0700; an existing one must be a real folder of ours that nobody else can enter, or
the daemon refuses to start: ``daemon.lock`` (an flock keeps a second daemon from stealing
the socket), ``daemon.json`` (0600: pid, socket, and for TCP the port and bearer token) and
the Unix socket ``daemon.sock``, born 0600 (``uvicorn.Config(uds=...)`` would make it 0666).
When that path is over the 107 bytes AF_UNIX allows, the socket goes in a per-user folder,
``$XDG_RUNTIME_DIR/orchestrator/`` or ``/tmp/orchestrator-UID/``, held to the same checks
(lstat: not a symlink, ours, mode 0700), so another user cannot pre-create it.

Sockets. One uvicorn ``Server`` serves pre-bound sockets: the Unix socket, and optionally a
TCP socket (any address family, so ``--host ::1`` works; created with ``IPPROTO_TCP``, or
asyncio skips TCP_NODELAY and each request waits 44 ms). A bind that fails is one line.

Connections. uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no
deadline for reading a request, and its ``limit_concurrency`` is only checked once a request's
head is complete (a slow client never gets there), counts both sockets together and answers
in plain text. So the daemon serves HTTP with :class:`GuardedH11`, uvicorn's h11 protocol
plus: a request's head must arrive within ``HEAD_TIMEOUT`` seconds of its first byte (or of
the connection), its body within ``BODY_TIMEOUT`` of its head, else 408 and the connection is
closed; at most ``MAX_CONNECTIONS`` connections are open on each socket (the next gets a JSON
503 and is closed: a flood on the TCP port leaves the Unix socket usable); uvicorn's
plain-text 400 for a malformed request is JSON too. Headers are also bounded by h11's
``max_incomplete_event_size``; a long response (an SSE stream) has no deadline.

Shutdown. The host owns SIGTERM/SIGINT (uvicorn would re-raise them after ``serve()``): first
stop taking work and let runs finish for the grace period, then stop them, close every SSE
stream, and only then stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from orchestrator.daemon.app import MAX_HEADERS, build_app
from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import SweepManager
from orchestrator.daemon.web_login import WebLogin
from orchestrator.diagnostics import LineLogger
from orchestrator.diagnostics import configure as configure_diagnostics
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.recovery import open_journal
from orchestrator.engine.resources import ResourcePool
from orchestrator.exceptions import StoreError
from orchestrator.heap import settle_if_owned
from orchestrator.store.layout import (
    daemon_dir,
    daemon_info_path,
    ensure_home,
    journal_path,
    private_dir,
)

if TYPE_CHECKING:
    from orchestrator.executors.dask_executor import DaskCluster

__all__ = [
    "BODY_TIMEOUT",
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "GuardedH11",
    "serve",
    "socket_path",
]

_MAX_UNIX_PATH = 107
#: Seconds a request's head may take to arrive, from its first byte (or from the connection).
HEAD_TIMEOUT = 5.0
#: Seconds a request's body may take to arrive once its head is in (bodies are at most 1 MiB).
BODY_TIMEOUT = 10.0
#: Open connections at most, on each socket (each SSE follower holds one).
MAX_CONNECTIONS = 256
#: Connections the kernel queues before the daemon accepts them (uvicorn's default; the kernel
#: caps it at ``net.core.somaxconn``): a burst of clients while the loop is busy queues rather
#: than being refused.
LISTEN_BACKLOG = 2048
#: Seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE = 5


def runtime_dir() -> Path:
    """The per-user folder for a socket whose home path is too long."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "orchestrator"
    return Path(tempfile.gettempdir()) / f"orchestrator-{os.getuid()}"


def socket_path(home: Path) -> Path:
    """The daemon's socket: in ``HOME/daemon/``, or in :func:`runtime_dir` when that path is
    too long for AF_UNIX."""
    path = daemon_dir(home) / "daemon.sock"
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(home.absolute())).hexdigest()[:16]
    return runtime_dir() / f"{digest}.sock"


def _raw_json(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, for the transport level
    (before h11 has a request to answer)."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _over_tcp(connection: object) -> bool:
    server = getattr(connection, "server", None)  # (host, port), or (path, None) for Unix
    return server is not None and server[1] is not None


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with deadlines for reading a request and a connection cap."""

    _timer: asyncio.TimerHandle | None = None
    _phase: str | None = None  # "head", "body" or None: what the deadline is waiting for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Counted per socket kind, so that a flood on the TCP port cannot lock the local CLI
        # out of the Unix socket (whose connections have no port).
        tcp = _over_tcp(self)
        same_kind = sum(1 for c in self.connections if _over_tcp(c) == tcp)
        if same_kind > MAX_CONNECTIONS:
            message = f"too many connections (at most {MAX_CONNECTIONS}); try again later"
            transport.write(_raw_json(503, "Service Unavailable", message))
            transport.close()
            return
        self._enter("head")  # whatever comes first must be a request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def send_400_response(self, msg: str) -> None:
        self._enter(None)
        self.transport.write(_raw_json(400, "Bad Request", "malformed HTTP request"))
        self.transport.close()

    def _follow(self) -> None:
        """Set the deadline for what the connection now waits for from the client."""
        state = self.conn.their_state
        phase: str | None = None
        if self.transport.is_closing():
            phase = None
        elif state is h11.SEND_BODY:
            phase = "body"
        elif state is h11.IDLE and (self.conn.trailing_data[0] or self._phase == "head"):
            # Part of a head has arrived, or nothing yet on a new connection. (Between two
            # requests, before any byte, uvicorn's keep-alive timeout applies instead.)
            phase = "head"
        self._enter(phase)

    def _enter(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = phase
        if phase is not None:
            delay = HEAD_TIMEOUT if phase == "head" else BODY_TIMEOUT
            self._timer = self.loop.call_later(delay, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == "head" and self.conn.our_state is h11.IDLE:
            message = f"request not received within {HEAD_TIMEOUT:g} s"
            self.transport.write(_raw_json(408, "Request Timeout", message))
        # In the body phase the handler is reading it: closing tells it the client is gone.
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon owns SIGINT/SIGTERM


class _ToDiagnostics(logging.Handler):
    """uvicorn's own messages (a malformed request, a response left incomplete) as one
    diagnostics line each, never a traceback on stderr."""

    def __init__(self, log: Any) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            text = " ".join(record.getMessage().split())
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                text = f"{text}: {type(error).__name__}: {' '.join(str(error).split())}"
            self.log.warning(f"http: {text}")


@contextlib.asynccontextmanager
async def _uvicorn_logs_to(log: Any) -> AsyncIterator[None]:
    logger = logging.getLogger("uvicorn.error")
    handler = _ToDiagnostics(log)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _bind_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)  # a stale socket: safe, we hold the lock
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host`` (IPv4 or IPv6, the first address it resolves to)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise StoreError(f"cannot listen on {host}: {reason}") from None
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def _allowed_hosts(sock: socket.socket) -> frozenset[str]:
    """The ``Host`` values a loopback TCP socket answers to: its address and ``localhost``,
    with the port (a DNS-rebound name is refused); empty (any) for a non-loopback one."""
    address, port = sock.getsockname()[:2]
    if not _is_loopback(address):
        return frozenset()
    shown = f"[{address}]" if ":" in address else address
    return frozenset({f"{shown}:{port}", f"localhost:{port}"})


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _lock(path: Path, home: Path) -> int:
    """The daemon's lock, held for its whole life; a second daemon is refused."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"a daemon is already running for {home}") from None
    return fd


def _url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening TCP socket (IPv6 in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _announce(log: Any, home: Path, sockets: list[socket.socket], web: WebLogin | None) -> None:
    """Say where the daemon listens and how to reach it (over TCP, a one-time sign-in link
    for the web page), then "ready" (the last line of a start: scripts wait for it with
    ``is_ready_record()``, which needs the event ``ready``)."""
    unix = str(sockets[0].getsockname())
    where = {"socket": unix}
    listening = f"listening on {unix}"
    if len(sockets) > 1:
        where["url"] = _url(sockets[1])
        listening += f" and {where['url']} (bearer token in {daemon_info_path(home)})"
    log.info(listening)
    if len(sockets) > 1 and web is not None:
        # Usable once, with no time limit: the daemon may be opened hours after it started.
        log.info(f"web page: {where['url']}/?login={web.issue(ttl=None)}")
        log.info(f"another sign-in link: orchestrator web --home {home}")
    log.info(
        f"submit sweeps with `orchestrator submit SPEC --home {home}`; the HTTP API "
        f"(docs/api.md): curl --unix-socket {unix} http://daemon/api/v1/sweeps"
    )
    log.info("ready", pid=os.getpid(), **where)


async def _main(
    home: Path,
    sockets: list[socket.socket],
    token: str | None,
    hosts: frozenset[str],
    max_runs: int,
    grace: float,
    err: IO[str],
    resources: ResourcePool,
    cluster: DaskCluster | None = None,
) -> None:
    log = configure_diagnostics(err)
    warnings = LineLogger(log, "warning").as_stream()  # for the functions that take ``err``
    hub = Hub()  # first, so that followers also see what recovery did
    # The browser sign-in lives as long as this process: a restart signs every page out.
    web = WebLogin(sockets[1].getsockname()[1]) if len(sockets) > 1 else None
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
            resources=resources if cluster is None else None,  # the workers hold them
            executors=cluster.executor if cluster is not None else None,
        )
        config = uvicorn.Config(
            build_app(
                manager,
                hub,
                home,
                token,
                hosts=hosts,
                report=report,
                web=web,
                url=_url(sockets[1]) if len(sockets) > 1 else None,
            ),
            http=GuardedH11,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=MAX_HEADERS + 4096,
        )
        server = _EmbeddedServer(config)
        settle_if_owned()  # before any sweep starts: a resumed one is not frozen with the rest
        opened = cluster if cluster is not None else contextlib.nullcontext()
        async with _uvicorn_logs_to(log), opened, anyio.create_task_group() as tg:
            await tg.start(manager.run)
            for sweep_id in manager.resume_lost():
                log.info(f"resuming sweep {sweep_id[:12]} (its daemon was lost)", sweep_id=sweep_id)
            tg.start_soon(server.serve, sockets)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                _announce(log, home, sockets, web)
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
    resources: ResourcePool,
    home: Path,
    *,
    host: str | None,
    port: int | None,
    allow_remote: bool,
    max_runs: int,
    grace: float,
    err: IO[str],
    cluster: DaskCluster | None = None,
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns the exit code. With
    ``cluster``, every sweep's runs go to that Dask cluster's workers."""
    if port is not None and not 0 <= port <= 65535:
        raise StoreError(f"--port {port}: expected 0 to 65535")
    tcp_host = (host or "127.0.0.1") if host is not None or port is not None else None
    if tcp_host is not None and not _is_loopback(tcp_host) and not allow_remote:
        raise StoreError(
            f"refusing to listen on {tcp_host}: pass --allow-remote (a token is "
            "always required over TCP)"
        )
    ensure_home(home)
    private = private_dir(daemon_dir(home))
    lock = _lock(private / "daemon.lock", home)
    sockets: list[socket.socket] = []
    sock_path = socket_path(home)
    info_path = daemon_info_path(home)
    try:
        if sock_path.parent != private:
            private_dir(sock_path.parent)
        sockets.append(_bind_unix(sock_path))
        info: dict[str, object] = {"pid": os.getpid(), "socket": str(sock_path)}
        token = None
        hosts = frozenset[str]()
        if tcp_host is not None:
            tcp = _bind_tcp(tcp_host, port or 0)
            sockets.append(tcp)
            token = secrets.token_urlsafe(32)
            hosts = _allowed_hosts(tcp)
            info.update(host=tcp.getsockname()[0], port=tcp.getsockname()[1], token=token)
        _write_private(info_path, json.dumps(info))
        anyio.run(_main, home, sockets, token, hosts, max_runs, grace, err, resources, cluster)
    finally:
        for sock in sockets:
            sock.close()
        if sockets:
            sock_path.unlink(missing_ok=True)
        info_path.unlink(missing_ok=True)
        os.close(lock)
    return 0
