"""The web page's HTML: the shell the daemon serves for every page path, or, given data, one
self-contained file (every script and stylesheet inlined, the data as JSON) that works from a
``file://`` URL with no daemon (``report --html``).

The data's shape is what the page's scripts read instead of calling the API::

    {"route": "/sweeps/ID",                      # the page to show
     "responses": {"/api/v1/sweeps/ID": {...},   # API answers by path, as the daemon gives them
                   "/api/v1/sweeps/ID/metrics": {...}}}

A path asked with a query (``/metrics?names=loss``) falls back to the same path without it,
so one answer with every metric serves any choice. Actions are hidden in that mode.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from orchestrator.web.assets import read_asset

__all__ = ["SHELL", "render_page"]

SHELL = "index.html"
_STYLESHEET = re.compile(r'<link rel="stylesheet" href="/static/([^"]+)">')
_SCRIPT = re.compile(r'<script src="/static/([^"]+)"></script>')
_CLOSING_SCRIPT = re.compile(r"</(script)", re.IGNORECASE)
_CLOSING_STYLE = re.compile(r"</(style)", re.IGNORECASE)


def render_page(data: dict[str, Any] | None = None) -> str:
    """The shell; with ``data``, the shell with its assets and ``data`` inlined."""
    shell = read_asset(SHELL).decode()
    if data is None:
        return shell
    shell = _STYLESHEET.sub(lambda m: f"<style>\n{_style(m.group(1))}\n</style>", shell)
    # The data goes before the first script, which reads it at once.
    first = _SCRIPT.search(shell)
    assert first is not None, "the shell loads its scripts from /static/"
    embedded = f'<script type="application/json" id="orchestrator-data">{_json(data)}</script>\n'
    shell = shell[: first.start()] + embedded + shell[first.start() :]
    return _SCRIPT.sub(lambda m: f"<script>\n{_script(m.group(1))}\n</script>", shell)


def _json(data: dict[str, Any]) -> str:
    """JSON safe inside a script element: ``<`` written as ``\\u003c`` (so ``</script>`` and
    ``<!--`` cannot end or confuse the element); still the same JSON. NaN and infinities are
    null, as the daemon sends them."""
    return msgspec.json.encode(data).decode().replace("<", "\\u003c")


def _script(name: str) -> str:
    # ``</script`` can only sit in a string, a regex or a comment, where ``<\/`` means the same.
    return _CLOSING_SCRIPT.sub(r"<\\/\1", read_asset(name).decode())


def _style(name: str) -> str:
    return _CLOSING_STYLE.sub(r"<\\/\1", read_asset(name).decode())
