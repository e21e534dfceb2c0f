"""Access to the web page over a real daemon's TCP socket: the printed one-time sign-in link
and the ones ``orchestrator web`` asks for, the session cookie they set, what that cookie
allows (reads; actions only with the action header and from the same origin), the 401s (HTML
for pages, JSON for the API), the assets and the page paths.

Each test runs the real daemon as a subprocess and talks to it over real sockets."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.diagnostics import is_ready_record
from orchestrator.store.layout import daemon_info_path
from orchestrator.web.page import render_page
from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
SPEC = """version: 1.1
kind: operation
matrix:
  kind: grid
  params:
    x: {kind: choice, value: [1]}
component:
  run:
    kind: job
    container: {command: [python, -c, "print({{ x }})"]}
"""


class WebDaemon:
    """A daemon on a loopback TCP port, with what it printed before it was ready."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "daemon", "--home", str(home), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "ORCHESTRATOR_LOG_FORMAT": "json"},
        )
        assert self.proc.stderr is not None
        self.startup: list[str] = []
        for line in self.proc.stderr:
            self.startup.append(line)
            if is_ready_record(line):
                break
        else:
            raise AssertionError(f"daemon did not start: {''.join(self.startup)}")
        stream = self.proc.stderr
        self.drain = threading.Thread(target=lambda: stream.read(), daemon=True)
        self.drain.start()
        self.info = json.loads(daemon_info_path(home).read_text())
        self.base = f"http://127.0.0.1:{self.info['port']}"

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers=headers, timeout=httpx.Timeout(10, read=None)
        )

    @property
    def cookie(self) -> str:
        return f"orchestrator_session_{self.info['port']}"

    def new_link(self) -> str:
        """A one-time sign-in link, asked for over the Unix socket (``orchestrator web``)."""
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=self.info["socket"]), base_url="http://daemon"
        ) as unix:
            answer = unix.post("/api/v1/web-login")
        assert answer.status_code == 201, answer.text
        url: str = answer.json()["url"]
        assert url.startswith(f"{self.base}/?login=")
        return url

    def logged_in(self) -> httpx.Client:
        with self.client() as signer:
            assert signer.get(self.new_link()).status_code == 303
            session = signer.cookies[self.cookie]
        client = self.client()
        client.cookies.set(self.cookie, session)
        return client

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0
        self.drain.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def daemon() -> Iterator[WebDaemon]:
    base = Path(tempfile.mkdtemp(prefix="orch-web-", dir="/tmp"))  # AF_UNIX paths are short
    running = WebDaemon(base / "home")
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(base, ignore_errors=True)


def printed_link(daemon: WebDaemon) -> str:
    events = [json.loads(line).get("event", "") for line in daemon.startup if line.startswith("{")]
    links = [str(e).removeprefix("web page: ") for e in events if e.startswith("web page: ")]
    assert len(links) == 1, daemon.startup
    assert links[0].startswith(f"{daemon.base}/?login=")
    assert daemon.info["token"] not in links[0]  # the bearer token is never in a URL
    return links[0]


def test_the_printed_link_signs_in_once_with_a_strict_http_only_cookie(
    daemon: WebDaemon,
) -> None:
    link = printed_link(daemon)
    with daemon.client() as client:
        answer = client.get(link)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{daemon.cookie}=")
        value = cookie.split(";")[0].split("=", 1)[1]
        assert value and value != daemon.info["token"]  # a session secret, not the token
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert answer.headers["referrer-policy"] == "no-referrer"
        # The client keeps the cookie: the page and the API now answer.
        page = client.get("/")
        assert page.status_code == 200 and page.text == render_page(None)
        assert client.get("/api/v1/sweeps").status_code == 200
        # The signed-in page cannot mint more sign-ins for others.
        minted = client.post("/api/v1/web-login", headers={"X-Orchestrator-Request": "1"})
        assert minted.status_code == 403
    for reused in (
        link,
        f"{daemon.base}/?login=nope",
        f"{daemon.base}/?token={daemon.info['token']}",
    ):
        again = httpx.get(reused, timeout=10)  # used once already, or never issued
        assert again.status_code == 401 and "text/html" in again.headers["content-type"]
        assert "set-cookie" not in again.headers


def test_orchestrator_web_prints_a_new_link_each_time(
    daemon: WebDaemon, cli: Callable[..., CliResult]
) -> None:
    home = str(Path(daemon.info["socket"]).parent.parent)
    first, second = (cli("web", "--home", home) for _ in range(2))
    assert first.code == second.code == 0, first.err
    links = [first.out.strip(), second.out.strip()]
    assert links[0] != links[1] and all(link.startswith(f"{daemon.base}/?login=") for link in links)
    for link in links:
        with daemon.client() as client:
            assert client.get(link).status_code == 303
            assert client.get("/api/v1/sweeps").status_code == 200


def test_without_auth_pages_get_an_html_401_and_the_api_json(daemon: WebDaemon) -> None:
    with daemon.client() as client:
        for path in ("/", "/sweeps/abc", "/static/style.css"):
            page = client.get(path)
            assert page.status_code == 401, path
            assert page.headers["content-type"].startswith("text/html"), path
            assert "sign-in link" in page.text
            assert "/static/" not in page.text  # it needs nothing it cannot load
        api = client.get("/api/v1/sweeps")
        assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
        assert api.json() == {"error": "missing or wrong bearer token"}
    with daemon.client() as client:
        for value in ("not-the-session", daemon.info["token"]):
            client.cookies.set(daemon.cookie, value)
            assert client.get("/api/v1/sweeps").status_code == 401
            assert client.get("/").status_code == 401


def test_the_cookie_allows_actions_only_with_the_action_header_and_from_this_origin(
    daemon: WebDaemon,
) -> None:
    body = {"spec": SPEC, "base_dir": str(ROOT)}
    same = daemon.base
    with daemon.logged_in() as client:
        plain = client.post("/api/v1/sweeps", json=body)  # what a cross-site form could send
        assert plain.status_code == 403 and "X-Orchestrator-Request" in plain.json()["error"]
        wrong_value = client.post(
            "/api/v1/sweeps", json=body, headers={"X-Orchestrator-Request": "0"}
        )
        assert wrong_value.status_code == 403
        foreign = client.post(
            "/api/v1/sweeps",
            json=body,
            headers={"X-Orchestrator-Request": "1", "Origin": "http://evil.test"},
        )
        assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]
        accepted = client.post(
            "/api/v1/sweeps", json=body, headers={"X-Orchestrator-Request": "1", "Origin": same}
        )
        assert accepted.status_code == 201, accepted.text
        sweep = accepted.json()["sweep"]
        assert client.get(f"/api/v1/sweeps/{sweep}").json()["sweep"] == sweep
    # The bearer token works as before, with no header and no cookie.
    with daemon.client(Authorization=f"Bearer {daemon.info['token']}") as client:
        assert client.post("/api/v1/sweeps", json=body).status_code == 201
        assert client.get("/submit").status_code == 200


def test_static_assets_are_served_with_their_content_types(daemon: WebDaemon) -> None:
    expected = {
        "/static/js/core.js": "text/javascript",
        "/static/style.css": "text/css",
        "/static/vendor/uplot/uPlot.iife.min.js": "text/javascript",
        "/static/vendor/uplot/uPlot.min.css": "text/css",
        "/static/vendor/uplot/LICENSE": "text/plain",
    }
    with daemon.logged_in() as client:
        for path, kind in expected.items():
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith(kind), path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.content
        for path in ("/static/nope.js", "/static/..%2Fpage.py", "/static/.hidden"):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert "error" in missing.json()


@pytest.mark.parametrize(
    "path", ["/", "/sweeps/abc123", "/runs/abc123:4", "/compare?runs=a,b", "/submit"]
)
def test_every_page_path_answers_the_shell(daemon: WebDaemon, path: str) -> None:
    with daemon.logged_in() as client:
        answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text == render_page(None)
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    # Every asset the shell names is served.
    with daemon.logged_in() as client:
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', answer.text):
            assert client.get(asset).status_code == 200, asset


def test_over_the_unix_socket_pages_need_no_login(daemon: WebDaemon) -> None:
    transport = httpx.HTTPTransport(uds=daemon.info["socket"])
    with httpx.Client(transport=transport, base_url="http://daemon", timeout=10) as client:
        assert client.get("/sweeps/x").text == render_page(None)
        assert client.get("/static/js/core.js").status_code == 200
