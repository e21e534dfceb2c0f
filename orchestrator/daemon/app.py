"""The HTTP API (``/api/v1``), as a Starlette app. JSON in and out; events and logs as SSE.

Requests over the Unix socket are trusted (the socket is 0600 in a 0700 folder); requests over
TCP need ``Authorization: Bearer TOKEN``. Bodies over 1 MiB get 413, malformed input 400 with
a one-line reason. See ``docs/api.md``.

This module is the API's map: the route table and the guard in front of it. The handlers are
in :mod:`orchestrator.daemon.routes`, the SSE framing in :mod:`orchestrator.daemon.sse`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import SweepManager
from orchestrator.daemon.routes import Api, failure, health, not_found
from orchestrator.exceptions import OrchestratorError

__all__ = ["MAX_BODY", "MAX_HEADERS", "TokenAuth", "build_app"]

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


def build_app(manager: SweepManager, hub: Hub, home: Path, token: str | None) -> TokenAuth:
    """The API over ``manager``'s sweeps and ``hub``'s events, guarded by :class:`TokenAuth`
    (``token`` None: no bearer check, the Unix socket only)."""
    api = Api(manager, hub, home)
    routes = [
        Route("/api/v1/health", health),
        Route("/api/v1/ready", api.ready),
        Route("/api/v1/sweeps", api.submit, methods=["POST"]),
        Route("/api/v1/sweeps", api.list_sweeps, methods=["GET"]),
        Route("/api/v1/sweeps/{sweep}", api.show_sweep),
        Route("/api/v1/sweeps/{sweep}/stop", api.stop_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/configurations", api.add_configurations, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/close", api.close_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/resume", api.resume_sweep, methods=["POST"]),
        Route("/api/v1/runs/{run}/stop", api.stop_run, methods=["POST"]),
        Route("/api/v1/runs/{run}/logs", api.logs),
        Route("/api/v1/events", api.events),
    ]
    app = Starlette(
        routes=routes,
        max_body_size=MAX_BODY,
        exception_handlers={404: not_found, OrchestratorError: failure},
    )
    return TokenAuth(app, token)
