"""The HTTP API (``/api/v1``), as a Starlette app. JSON in and out; events and logs as SSE.

Requests over the Unix socket are trusted (the socket is 0600 in a 0700 folder); requests over
TCP need ``Authorization: Bearer TOKEN``, and on a loopback address a ``Host`` that names it
(``127.0.0.1:PORT``, ``[::1]:PORT`` or ``localhost:PORT``) and no foreign ``Origin``: a web
page whose name was rebound to 127.0.0.1 gets 403 before the token is even looked at. A
browser signs in once with the link the daemon prints and then carries a session cookie
(:mod:`orchestrator.daemon.web_routes`). Bodies
over 1 MiB get 413, malformed input 400 with a one-line reason. Every error, whoever raises
it (a handler, Starlette's routing or body limit, an unexpected exception), is
``{"error": "one line"}``; an unexpected exception is a 500 and one line in the daemon's log,
never a traceback. See ``docs/api.md``.

This module is the API's map: the route table and the guard in front of it. The handlers are
in :mod:`orchestrator.daemon.routes`, the SSE framing in :mod:`orchestrator.daemon.sse`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import SweepManager
from orchestrator.daemon.routes import Api, failure, not_found
from orchestrator.daemon.web_login import WebLogin
from orchestrator.daemon.web_routes import (
    ACTION_HEADER,
    VIA_COOKIE,
    is_page_path,
    login,
    session_of,
    unauthorised_page,
    web_routes,
)
from orchestrator.exceptions import OrchestratorError

__all__ = ["MAX_BODY", "MAX_HEADERS", "TokenAuth", "build_app"]

MAX_BODY = 1024 * 1024
#: Largest total size of a request's headers (uvicorn's h11 limit only applies to heads that
#: arrive in pieces).
MAX_HEADERS = 16 * 1024
#: Bytes of a non-JSON error body kept as the ``error`` text of its JSON replacement.
_ERROR_TEXT = 300
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class TokenAuth:
    """Pure ASGI guard in front of the API: oversized headers get 431; TCP requests need a
    ``Host`` in ``hosts`` (when given: a loopback socket), an ``Origin`` (if any) that matches
    it, and the bearer token, or the web page's session cookie (set by a one-time sign-in link
    ``GET /?login=CODE``; a POST with it also needs ``X-Orchestrator-Request: 1``);
    Unix-socket requests pass. Every
    error answer that leaves is JSON (but the 401 page a browser gets without the cookie), and
    an exception escaping the app is reported (one line) and answered 500."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        *,
        hosts: frozenset[str] = frozenset(),
        report: Callable[[str], None] | None = None,
        web: WebLogin | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.report = report
        self.web = web

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._answer(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        size = sum(len(k) + len(v) for k, v in scope.get("headers") or [])
        if size > MAX_HEADERS:
            return _refuse(431, f"request headers are {size:,} bytes; at most {MAX_HEADERS:,}")
        server = scope.get("server")
        over_tcp = server is not None and server[1] is not None
        if not over_tcp or self.token is None:
            return None
        host = (_header(scope, b"host") or "").lower()
        if self.hosts and host not in self.hosts:
            expected = " or ".join(sorted(self.hosts))
            return _refuse(403, f"Host {host!r} is not this daemon's address (expected {expected})")
        origin = _header(scope, b"origin")
        if origin is not None and origin.lower() != f"http://{host}":
            return _refuse(403, f"cross-origin request from {origin!r} refused")
        given = _header(scope, b"authorization") or ""
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return None
        return self._browser_refusal(scope)

    def _browser_refusal(self, scope: Scope) -> Response | None:
        """A browser's request (no bearer token): ``GET /?login=CODE`` signs in; the session
        cookie passes reads, and actions that carry the action header; without it, a page
        path gets the HTML 401 page, an API path the JSON one."""
        method, path, web = scope["method"], scope["path"], self.web
        query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
        if web is not None and method in ("GET", "HEAD") and path == "/" and "login" in query:
            return login(query["login"][0], web)
        cookie = session_of(_header(scope, b"cookie"), web.cookie) if web is not None else None
        if web is None or not web.signed_in(cookie):
            if is_page_path(path):
                return unauthorised_page()
            return _refuse(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        scope[VIA_COOKIE] = True
        if method in ("GET", "HEAD") or _header(scope, ACTION_HEADER.lower().encode()) == "1":
            return None  # a foreign Origin was refused above
        return _refuse(403, f"an action from the web page needs the header {ACTION_HEADER}: 1")

    async def _answer(self, scope: Scope, receive: Any, send: Any) -> None:
        """Run the app; a non-JSON error answer (Starlette's plain-text 405/413/500) is sent
        as JSON, and an escaping exception is reported and answered 500."""
        held: Message | None = None  # the start of an error answer being rewritten
        text = bytearray()
        started = complete = False

        async def json_errors(message: Message) -> None:
            nonlocal held, started, complete
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] >= 400 and not bytes(kind).startswith(b"application/json"):
                    held = message
                    return
                started = True
            elif message["type"] == "http.response.body" and held is not None:
                text.extend(message.get("body", b"")[: _ERROR_TEXT - len(text)])
                if message.get("more_body"):
                    return
                start, held = held, None
                started = complete = True
                await self._json_error(start, bytes(text), send)
                return
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, json_errors)
        except Exception as exc:
            if not isinstance(exc, ClientDisconnect) and self.report is not None:
                error = " ".join(f"{type(exc).__name__}: {exc}".split())
                self.report(f"{scope['method']} {scope['path']}: internal error: {error}")
            if not started:
                await _refuse(500, "internal error")(scope, receive, send)
            elif not complete:
                # End what was sent (a client sees it cut short); the connection may be gone.
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _json_error(start: Message, body: bytes, send: Any) -> None:
        status = int(start["status"])
        if status == 413:
            message = f"request body over {MAX_BODY:,} bytes"
        else:
            message = " ".join(body.decode("utf-8", "replace").split())
            message = message or HTTPStatus(status).phrase
        payload = json.dumps({"error": message}).encode()
        skip = (b"content-type", b"content-length")
        headers = [(k, v) for k, v in start.get("headers") or [] if bytes(k).lower() not in skip]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (405 above all) as JSON, with their headers (``Allow``)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = " ".join(str(exc.detail).split())
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


def build_app(
    manager: SweepManager,
    hub: Hub,
    home: Path,
    token: str | None,
    *,
    hosts: frozenset[str] = frozenset(),
    report: Callable[[str], None] | None = None,
    web: WebLogin | None = None,
    url: str | None = None,
) -> TokenAuth:
    """The API over ``manager``'s sweeps and ``hub``'s events, guarded by :class:`TokenAuth`
    (``token`` None: no bearer check, the Unix socket only; ``hosts``: the ``Host`` values the
    TCP socket answers to, empty for any; ``report``: where unexpected exceptions are told;
    ``web``, ``url``: the browser sign-in and the TCP address, when there is one)."""
    api = Api(manager, hub, home)
    routes = [
        Route("/api/v1/health", api.health),
        Route("/api/v1/ready", api.ready),
        Route("/api/v1/resources", api.resources),
        Route("/api/v1/sweeps", api.submit, methods=["POST"]),
        Route("/api/v1/sweeps", api.list_sweeps, methods=["GET"]),
        Route("/api/v1/sweeps/{sweep}", api.show_sweep),
        Route("/api/v1/sweeps/{sweep}/stop", api.stop_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/configurations", api.add_configurations, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/close", api.close_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/resume", api.resume_sweep, methods=["POST"]),
        Route("/api/v1/sweeps/{sweep}/metrics", api.sweep_metrics, methods=["GET"]),
        Route("/api/v1/sweeps/{sweep}/metrics/names", api.sweep_metric_names, methods=["GET"]),
        Route("/api/v1/runs/{run}", api.show_run),
        Route("/api/v1/runs/{run}/diff", api.diff_runs),
        Route("/api/v1/runs/{run}/metrics", api.run_metrics, methods=["GET"]),
        Route("/api/v1/runs/{run}/stop", api.stop_run, methods=["POST"]),
        Route("/api/v1/runs/{run}/logs", api.logs),
        Route("/api/v1/events", api.events),
        *web_routes(web, url),  # the web page: its paths, /static/, sign-in links
    ]
    app = Starlette(
        routes=routes,
        max_body_size=MAX_BODY,
        exception_handlers={
            404: not_found,
            HTTPException: _http_error,
            OrchestratorError: failure,
            Exception: failure,  # the 500 answer; TokenAuth reports the exception
        },
    )
    return TokenAuth(app, token, hosts=hosts, report=report, web=web)
