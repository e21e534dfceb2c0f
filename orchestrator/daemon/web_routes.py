"""The web page's routes: the HTML shell for every page path, the static assets, and the
browser sign-in.

A browser signs in with a one-time link (:mod:`orchestrator.daemon.web_login`): the daemon
prints ``http://HOST:PORT/?login=CODE`` when it starts, and ``orchestrator web`` asks it for
another (``POST /api/v1/web-login``, over the Unix socket or with the bearer token). The link
sets an HttpOnly, SameSite=Strict session cookie and redirects to ``/`` so the code leaves the
address bar. :class:`~orchestrator.daemon.app.TokenAuth` accepts that cookie like the bearer
token for reads; a POST with it also needs ``X-Orchestrator-Request: 1``, a header no plain
cross-site form can send (and a same-origin ``Origin`` when one is sent).
"""

from __future__ import annotations

import html

from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.daemon.web_login import WebLogin
from orchestrator.web.assets import content_type, read_asset
from orchestrator.web.page import render_page

__all__ = [
    "ACTION_HEADER",
    "VIA_COOKIE",
    "is_page_path",
    "login",
    "session_of",
    "unauthorised_page",
    "web_routes",
]

#: Set in a request's scope when the session cookie (not the bearer token) authorised it.
VIA_COOKIE = "orchestrator.via_cookie"
#: The header a POST authorised by the cookie must carry (``fetch`` sets it; a form cannot).
ACTION_HEADER = "X-Orchestrator-Request"
#: What every HTML answer says about itself: no framing (clickjacking of the action buttons),
#: scripts and connections to this origin only, no referrer (the login URL holds the token).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: The page paths; the shell's scripts draw the page the path names.
PAGES = ("/", "/sweeps/{sweep}", "/runs/{run}", "/compare", "/submit")


def is_page_path(path: str) -> bool:
    """Whether a path is for a person (an HTML answer) rather than for a program (JSON)."""
    return not path.startswith("/api/")


def session_of(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, if any."""
    if not cookie_header:
        return None
    return cookie_parser(cookie_header).get(name)


def login(given: str, web: WebLogin) -> Response:
    """``GET /?login=CODE``: a 303 to ``/`` that sets the session cookie when CODE is an
    unused link of this daemon, else the 401 page."""
    if not web.redeem(given):
        return unauthorised_page(
            "That sign-in link was used already, has expired, or is not this daemon's (was it "
            "restarted?)."
        )
    response = RedirectResponse("/", status_code=303, headers={"Referrer-Policy": "no-referrer"})
    response.set_cookie(
        web.cookie, web.session, path="/", httponly=True, samesite="strict", secure=False
    )
    return response


def unauthorised_page(why: str = "This page needs you to sign in.") -> Response:
    """The 401 a browser gets without the cookie: a small page saying what to open."""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orchestrator: sign in</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 4em auto">
<h1>orchestrator</h1>
<p>{html.escape(why)}</p>
<p>Open a sign-in link: the daemon printed one when it started
(<code>web page: http://127.0.0.1:PORT/?login=…</code>), and
<code>orchestrator web --home HOME</code> prints a new one. Each link works once.</p>
</body></html>
"""
    return HTMLResponse(body, status_code=401, headers=_PAGE_HEADERS)


async def page(request: Request) -> Response:
    """Every page path answers the same shell; its scripts read the path."""
    return HTMLResponse(render_page(None), headers=_PAGE_HEADERS)


async def static(request: Request) -> Response:
    """An asset of the page (NotFoundError, so a JSON 404, for anything else)."""
    name = request.path_params["name"]
    return Response(
        read_asset(name),
        media_type=content_type(name),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def web_routes(web: WebLogin | None, url: str | None) -> list[Route]:
    """The page paths, ``/static/{name}`` and ``POST /api/v1/web-login`` (a new sign-in link
    for ``orchestrator web``), for the app's route table. ``web``/``url``: the daemon's
    sign-in state and its TCP address (None: no TCP socket, so no page a browser can reach)."""

    async def new_link(request: Request) -> Response:
        if web is None or url is None:
            return JSONResponse(
                {"error": "the web page needs the daemon to listen on TCP: start it with --port"},
                status_code=409,
            )
        if request.scope.get(VIA_COOKIE):  # a signed-in page does not hand out sign-ins
            return JSONResponse({"error": "ask over the socket or with the token"}, 403)
        return JSONResponse({"url": f"{url}/?login={web.issue()}"}, status_code=201)

    routes = [Route(path, page, methods=["GET"]) for path in PAGES]
    routes.append(Route("/static/{name:path}", static, methods=["GET"]))
    routes.append(Route("/api/v1/web-login", new_link, methods=["POST"]))
    return routes
