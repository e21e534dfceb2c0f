"""The web page's files, read from the package (``orchestrator/web/static/``).

Names are relative paths such as ``js/core.js``; anything that could leave the folder (``..``,
an absolute path, a hidden file) is refused as not found, so a URL can name an asset directly.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from orchestrator.exceptions import NotFoundError

__all__ = ["content_type", "read_asset"]

#: A safe relative name: plain parts of letters, digits, ``_ . -``, none starting with a dot.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@functools.cache
def read_asset(name: str) -> bytes:
    """The bytes of the asset ``name`` (read once: package data does not change while the
    daemon runs); NotFoundError for a name that is unsafe or not there."""
    if not _NAME.fullmatch(name):
        raise NotFoundError(f"no asset {name!r}")
    path = resources.files("orchestrator.web").joinpath("static", *name.split("/"))
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFoundError(f"no asset {name!r}") from None


def content_type(name: str) -> str:
    """The ``Content-Type`` to serve ``name`` with (plain text for what is not listed, such
    as ``LICENSE``)."""
    dot = name.rfind(".")
    suffix = name[dot:].lower() if dot > name.rfind("/") else ""
    return _TYPES.get(suffix, "text/plain; charset=utf-8")
