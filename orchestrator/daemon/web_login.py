"""Browser sign-in for one daemon process: one-time links and the session they open.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so a browser signs in
once and then carries a cookie. The link the daemon prints (``/?login=CODE``), and each one
``orchestrator web`` asks for, works once: a link left in a terminal's scrollback, a log or a
browser's history opens nothing later, and the long-lived bearer token never appears in a
URL. Using it sets the session cookie (HttpOnly, SameSite=Strict), whose value is a secret of
this daemon process only: a restarted daemon signs every browser out. The cookie is named
after the port, because browsers share cookies across the ports of a host and two daemons
must not sign each other's pages out.
"""

from __future__ import annotations

import hmac
import secrets
import time

__all__ = ["WebLogin"]

#: Unused links kept at once; the oldest goes first.
MAX_PENDING = 32
#: Seconds a link asked for with ``orchestrator web`` stays usable (the one printed at start
#: stays usable until it is used, so a daemon started in the morning can be opened later).
LINK_TTL_S = 600.0


class WebLogin:
    """The sign-in state of one daemon process (it lives as long as the daemon's app)."""

    def __init__(self, port: int) -> None:
        self.cookie = f"orchestrator_session_{port}"
        self._session = secrets.token_urlsafe(32)
        #: Unused codes and when each stops working (None: when it is used).
        self._pending: dict[str, float | None] = {}

    def issue(self, *, ttl: float | None = LINK_TTL_S) -> str:
        """A new one-time code for ``/?login=CODE``."""
        code = secrets.token_urlsafe(24)
        self._pending[code] = None if ttl is None else time.monotonic() + ttl
        while len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        return code

    def redeem(self, given: str) -> bool:
        """Whether ``given`` is a code issued here, unused and not expired; it is used now."""
        for code in list(self._pending):
            if hmac.compare_digest(code.encode(), given.encode()):
                expires = self._pending.pop(code)
                return expires is None or time.monotonic() < expires
        return False

    @property
    def session(self) -> str:
        """The cookie's value for a signed-in browser."""
        return self._session

    def signed_in(self, value: str | None) -> bool:
        """Whether a cookie value is this daemon's session."""
        return value is not None and hmac.compare_digest(value.encode(), self._session.encode())
