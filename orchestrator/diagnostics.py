"""The orchestrator's own diagnostics (the daemon's "ready", crashes, plugin problems...)
through structlog: each message gets an ISO-8601 UTC timestamp and a level.

Where a message goes decides how it looks: one JSON object per line
(``{"timestamp": "...Z", "level": "info", "event": "ready", ...}``) when the stream is not a
terminal (a pipe, a file, journald), readable lines (structlog's ``ConsoleRenderer``, in
colour unless ``NO_COLOR`` is set) on a terminal. The environment variable
``ORCHESTRATOR_LOG_FORMAT`` overrides that guess: ``json``, ``console``, or ``auto`` (the same
as unset). Every line is flushed as soon as it is written.

structlog is never configured globally (``structlog.configure`` would leak into library users
and between tests): :func:`configure` builds a logger of its own for one stream. This is the
only module that imports structlog, and nothing imports it on the way to ``--help``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, TextIO, cast

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["ENV_VAR", "LineLogger", "configure", "is_ready_record", "iso_timestamp"]

#: ``json``, ``console`` or ``auto`` (unset or empty: ``auto``).
ENV_VAR = "ORCHESTRATOR_LOG_FORMAT"
_FORMATS = ("auto", "json", "console")
_FIRST = ("timestamp", "level", "event")


def iso_timestamp(ts: float | None = None) -> str:
    """``ts`` (seconds since the epoch; now when None) as ISO 8601 in UTC, to the microsecond:
    ``2025-01-31T12:00:00.123456Z``."""
    when = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _stamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Unlike structlog's TimeStamper, keeps a timestamp the caller gave (the event log's
    # records carry the time of the event, not the time they were written).
    event_dict.setdefault("timestamp", iso_timestamp())
    return event_dict


def _first_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or not a real file
        return False


def configure(stream: IO[str], *, json_lines: bool | None = None) -> FilteringBoundLogger:
    """A logger that writes to ``stream`` (INFO and up), each line flushed at once.

    ``json_lines`` True: one JSON object per line; False: console lines; None: what
    ``ORCHESTRATOR_LOG_FORMAT`` says, or, when it is unset or ``auto``, JSON unless ``stream``
    is a terminal. An unknown value of the variable counts as ``auto`` and is reported as a
    warning on the logger it returns.
    """
    tty = _is_tty(stream)
    unknown = None
    if json_lines is None:
        wanted = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
        if wanted not in _FORMATS:
            unknown, wanted = wanted, "auto"
        json_lines = wanted == "json" or (wanted == "auto" and not tty)
    renderer: Processor
    if json_lines:
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = tty and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=0)
    processors: list[Processor] = [structlog.processors.add_log_level, _stamp]
    if json_lines:  # the console renderer formats exc_info itself
        processors.append(structlog.processors.format_exc_info)
    processors += [_first_keys, renderer]
    proxy = structlog.wrap_logger(
        structlog.WriteLogger(cast("TextIO", stream)),  # writes, then flushes
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    # bind() turns the lazy proxy into a logger with the processors above, so that a later
    # structlog.configure() by someone else cannot change it.
    logger = cast("FilteringBoundLogger", proxy.bind())
    if unknown is not None:
        logger.warning(
            f"{ENV_VAR}={unknown!r} is not one of json, console, auto: using auto",
            variable=ENV_VAR,
            value=unknown,
        )
    return logger


class LineLogger:
    """A write-only text stream for functions that report on an ``err`` stream: each complete
    non-empty line written to it becomes one message of ``logger`` at ``level``.

    A line without its newline waits for the rest, or for :meth:`flush`.
    """

    def __init__(self, logger: FilteringBoundLogger, level: str = "warning") -> None:
        self._log = {
            "debug": logger.debug,
            "info": logger.info,
            "warning": logger.warning,
            "error": logger.error,
            "critical": logger.critical,
        }[level]
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        line, self._pending = self._pending, ""
        self._emit(line)

    def isatty(self) -> bool:
        return False

    def as_stream(self) -> IO[str]:
        """This object, typed as the text stream the functions that take ``err`` expect
        (it only implements ``write``, ``flush`` and ``isatty``)."""
        return cast("IO[str]", self)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._log(line)


def is_ready_record(line: str) -> bool:
    """Is ``line`` the daemon's "ready" record (JSON or console)? Scripts that start a daemon
    wait for it on its stderr."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()  # console colours
    if text.startswith("{"):
        try:
            return bool(json.loads(text).get("event") == "ready")
        except (ValueError, AttributeError):
            return False
    return " ready " in f" {text} " and "[info" in text
