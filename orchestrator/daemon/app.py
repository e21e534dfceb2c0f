"""The HTTP API (``/api/v1``), as a Starlette app. JSON in and out; events and logs as SSE.

Requests over the Unix socket are trusted (the socket is 0600 in a 0700 folder); requests over
TCP need ``Authorization: Bearer TOKEN``. Bodies over 1 MiB get 413, malformed input 400 with
a one-line reason. See ``docs/api.md``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import Submission, SweepManager
from orchestrator.engine.events import Event, LogLine, RunStateChanged
from orchestrator.exceptions import (
    NotFoundError,
    OrchestratorError,
    SpecError,
    SweepBusyError,
    UnavailableError,
)
from orchestrator.history import run_finished, sweep_detail, sweep_items
from orchestrator.logfollow import follow_log
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

__all__ = ["MAX_BODY", "TokenAuth", "build_app"]

MAX_BODY = 1024 * 1024
#: Largest total size of a request's headers (uvicorn's h11 limit only applies to heads that
#: arrive in pieces).
MAX_HEADERS = 16 * 1024
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class TokenAuth:
    """Pure ASGI: oversized headers get 431; TCP requests need the bearer token; Unix-socket
    requests pass."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope.get("headers") or [])
            if size > MAX_HEADERS:
                response = JSONResponse(
                    {"error": f"request headers are {size:,} bytes; at most {MAX_HEADERS:,}"},
                    status_code=431,
                )
                await response(scope, receive, send)
                return
        if scope["type"] == "http" and self.token is not None:
            server = scope.get("server")
            over_tcp = server is not None and server[1] is not None
            if over_tcp:
                headers = dict(scope.get("headers") or [])
                given = headers.get(b"authorization", b"").decode("latin-1")
                expected = f"Bearer {self.token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    response = JSONResponse(
                        {"error": "missing or wrong bearer token"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


async def _json_body(request: Request, empty: bytes) -> Any:
    """The parsed body (``empty`` when there is none), or the 400 answer to send."""
    try:
        return json.loads(await request.body() or empty)
    except json.JSONDecodeError as exc:
        return _error(f"body: expected JSON ({exc.msg})", 400)


def build_app(manager: SweepManager, hub: Hub, home: Path, token: str | None) -> TokenAuth:
    journal = manager.journal

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if manager.accepting:
            return JSONResponse({"ready": True, "sweeps": len(manager.sweeps)})
        return JSONResponse({"ready": False}, status_code=503)

    async def submit(request: Request) -> Response:
        body = await _json_body(request, b"null")
        if isinstance(body, Response):
            return body
        try:
            submission = msgspec.convert(body, Submission)
        except msgspec.ValidationError as exc:
            return _error(f"body: {exc}", 400)
        try:
            sweep_id, total = manager.submit(submission)
        except SpecError as exc:
            return _error(str(exc), 400)
        except UnavailableError as exc:
            return _error(str(exc), 503)
        return JSONResponse({"sweep": sweep_id, "runs": total}, status_code=201)

    async def list_sweeps(request: Request) -> Response:
        await journal.flush()
        limit_text = request.query_params.get("limit", "200")
        limit = int(limit_text) if limit_text.isdigit() else 200
        return JSONResponse(sweep_items(journal, min(limit, 10_000)))

    async def show_sweep(request: Request) -> Response:
        await journal.flush()
        try:
            body = sweep_detail(
                journal,
                request.path_params["sweep"],
                sort=request.query_params.get("sort") or None,
                every_attempt=request.query_params.get("all") == "1",
            )
        except NotFoundError as exc:
            return _error(str(exc), 404)
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def stop_sweep(request: Request) -> Response:
        if manager.stop_sweep(request.path_params["sweep"]):
            return JSONResponse({"stopping": True}, status_code=202)
        return _error("no running sweep with that id", 404)

    async def add_configurations(request: Request) -> Response:
        body = await _json_body(request, b"null")
        if isinstance(body, Response):
            return body
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list):
            return _error('body: expected {"values": [{...}, ...]}', 400)
        try:
            indexes = manager.add_configurations(request.path_params["sweep"], values)
        except SpecError as exc:
            return _error(str(exc), 400)
        except NotFoundError as exc:
            return _error(str(exc), 404)
        return JSONResponse({"indexes": indexes}, status_code=202)

    async def close_sweep(request: Request) -> Response:
        if manager.close_sweep(request.path_params["sweep"]):
            return JSONResponse({"closed": True}, status_code=202)
        return _error("no open sweep with that id", 404)

    async def resume_sweep(request: Request) -> Response:
        body = await _json_body(request, b"{}")
        if isinstance(body, Response):
            return body
        if not isinstance(body, dict):
            return _error('body: expected {"force": false, "only": ["failed"]}', 400)
        only = body.get("only")
        try:
            sweep_id, total = manager.resume(
                request.path_params["sweep"],
                force=bool(body.get("force")),
                only_states=set(only) if only else None,
            )
        except NotFoundError as exc:
            return _error(str(exc), 404)
        except SweepBusyError as exc:
            return _error(str(exc), 409)
        except SpecError as exc:
            return _error(str(exc), 400)
        return JSONResponse({"sweep": sweep_id, "runs": total}, status_code=202)

    async def stop_run(request: Request) -> Response:
        if manager.stop_run(request.path_params["run"]):
            return JSONResponse({"stopping": True}, status_code=202)
        return _error("no running run with that id", 404)

    async def events(request: Request) -> Response:
        after = request.headers.get("last-event-id")
        stream = hub.follow(lambda event: True, int(after) if after and after.isdigit() else None)
        return StreamingResponse(
            _sse(stream), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def logs(request: Request) -> Response:
        run_id = request.path_params["run"]
        await journal.flush()
        try:
            row = journal.find_run(run_id)
        except NotFoundError as exc:
            return _error(str(exc), 404)
        stream = request.query_params.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            return _error("stream: expected stdout or stderr", 400)
        offset_text = request.headers.get("last-event-id") or request.query_params.get("offset")
        offset = int(offset_text) if offset_text and offset_text.isdigit() else 0
        path = RunLayout(home, row.id).run_dir / f"{stream}.log"
        if request.query_params.get("follow") not in ("1", "true"):
            data = path.read_bytes()[offset:] if path.exists() else b""
            return Response(data, media_type="text/plain")

        def concerns(event: Event) -> bool:
            return isinstance(event, LogLine | RunStateChanged) and event.run_id == row.id

        updates = hub.follow(concerns)
        return StreamingResponse(
            _follow_log(path, offset, updates, journal, row.id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    routes = [
        Route("/api/v1/health", health),
        Route("/api/v1/ready", ready),
        Route("/api/v1/sweeps", submit, methods=["POST"]),
        Route("/api/v1/sweeps", list_sweeps, methods=["GET"]),
        Route("/api/v1/sweeps/{sweep}", show_sweep),
        Route("/api/v1/sweeps/{sweep}/stop", stop_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/configurations", add_configurations, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/close", close_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/resume", resume_sweep, methods=["POST"]),
        Route("/api/v1/runs/{run}/stop", stop_run, methods=["POST"]),
        Route("/api/v1/runs/{run}/logs", logs),
        Route("/api/v1/events", events),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(f"no route {request.method} {request.url.path}", 404)

    async def failure(request: Request, exc: Exception) -> Response:
        return _error(str(exc) if isinstance(exc, OrchestratorError) else "internal error", 500)

    app = Starlette(
        routes=routes,
        max_body_size=MAX_BODY,
        exception_handlers={404: not_found, OrchestratorError: failure},
    )
    return TokenAuth(app, token)


async def _sse(stream: MemoryObjectReceiveStream[Any]) -> AsyncIterator[bytes]:
    """Frames as SSE, coalesced; the stream ends cleanly when the hub cuts this follower off
    (too slow: it may resume with Last-Event-ID) or closes (``event: shutdown``)."""
    yield b"retry: 1000\n\n"
    async with stream:
        while True:
            with anyio.move_on_after(15):
                try:
                    frame = await stream.receive()
                except anyio.EndOfStream:
                    yield b"event: shutdown\ndata: {}\n\n"
                    return
                chunks = [frame.encode()]
                # Coalesce: everything already queued goes out in the same write.
                while True:
                    try:
                        chunks.append(stream.receive_nowait().encode())
                    except anyio.WouldBlock:
                        break
                yield b"".join(chunks)
                continue
            yield b": ping\n\n"


async def _follow_log(
    path: Path,
    offset: int,
    updates: MemoryObjectReceiveStream[Any],
    journal: Journal,
    run_id: str,
) -> AsyncIterator[bytes]:
    """The log from ``offset``, then every new line as it is written; ends with the run.

    :func:`follow_log` reads the file, woken by the hub's events for this run (or after a
    second); this frames its bytes as SSE. Each frame's id is the byte offset after it, so a
    client resumes with Last-Event-ID.
    """
    position = offset
    pending = b""
    closed = False  # the hub closed: the daemon is going down

    async def finished() -> bool:
        if closed:
            return True
        await journal.flush()
        return run_finished(journal, run_id)

    async def wake() -> None:
        nonlocal closed
        try:
            with anyio.move_on_after(1.0):
                await updates.receive()
                while True:
                    updates.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            closed = True

    def frames(data: bytes) -> bytes:
        nonlocal pending, position
        position += len(data)
        pending += data
        *lines, pending = pending.split(b"\n")
        consumed = position - len(pending)
        body = b"".join(b"data: %s\n" % line for line in lines)
        return b"id: %d\n%s\n" % (consumed, body) if lines else b""

    async with (
        updates,
        contextlib.aclosing(follow_log(path, offset, finished=finished, wake=wake)) as reads,
    ):
        async for data in reads:
            chunk = frames(data)
            if chunk:
                yield chunk
        if pending:
            yield b"data: %s\n\n" % pending
        yield b"event: end\ndata: {}\n\n"
