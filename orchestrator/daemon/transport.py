"""An httpx transport for the CLI's daemon client whose failures are one line.

Imported only when a command talks to a daemon (httpx is not needed for ``--help``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from orchestrator.exceptions import UnavailableError

__all__ = ["OneLineErrors"]


def _lost(where: str, exc: httpx.TransportError) -> UnavailableError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return UnavailableError(f"lost the connection to the daemon on {where}: {reason}")


class _Stream(httpx.SyncByteStream):
    """A response body whose read errors (the daemon died mid-stream) are one line."""

    def __init__(self, inner: httpx.SyncByteStream, where: str) -> None:
        self._inner = inner
        self._where = where

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx.TransportError as exc:
            raise _lost(self._where, exc) from None

    def close(self) -> None:
        self._inner.close()


class OneLineErrors(httpx.BaseTransport):
    """Wraps a transport: a connect, read or protocol error, in the request or later in its
    streamed body, is raised as UnavailableError naming ``where`` (never a traceback)."""

    def __init__(self, inner: httpx.BaseTransport, where: str) -> None:
        self._inner = inner
        self._where = where

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            raise _lost(self._where, exc) from None
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Stream(response.stream, self._where),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()
