"""The request handlers of the HTTP API: parse the request, call the manager or the read
model, map the project's errors to status codes. ``app.py`` wires them to paths.

Their error answers are ``{"error": "one line"}``, so a client can show them as they are.
Every ``{sweep}`` and ``{run}`` in a path is resolved by the read model
(:func:`~orchestrator.history.find_sweep`, :func:`~orchestrator.history.find_run`), exactly as
the CLI resolves them: an id, a unique prefix, ``last``, ``SWEEP:INDEX`` for a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import Submission, SweepManager
from orchestrator.daemon.page_reads import PageReads
from orchestrator.daemon.sse import event_frames, log_frames, log_range
from orchestrator.engine.events import Event, LogLine, RunStateChanged
from orchestrator.exceptions import (
    AmbiguousRefError,
    NotFoundError,
    OrchestratorError,
    SpecError,
    SweepBusyError,
    UnavailableError,
)
from orchestrator.history import (
    find_run,
    find_sweep,
    run_detail,
    run_diff,
    sweep_detail,
)
from orchestrator.store.layout import RunLayout
from orchestrator.store.rows import RunRow, SweepRow
from orchestrator.store.series import SeriesReader
from orchestrator.sweep_board import Board

__all__ = ["Api", "failure", "not_found"]


def _error(message: str, status: int) -> JSONResponse:
    """An error answer; the message is squeezed onto one line (some come from multi-line
    exception texts)."""
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


async def _json_body(request: Request, empty: bytes) -> Any:
    """The parsed body (``empty`` when there is none), or the 400 answer to send."""
    data = await request.body() or empty
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        return _error(f"body: expected JSON ({exc.msg})", 400)
    except RecursionError:
        return _error(f"body: JSON nested deeper than {MAX_NESTING} levels", 400)
    except ValueError as exc:  # not UTF-8, or an integer of over 4300 digits
        return _error(f"body: expected JSON ({exc})", 400)
    if _nesting(value) > MAX_NESTING:  # what reads it next may recurse: keep it shallow
        return _error(f"body: JSON nested deeper than {MAX_NESTING} levels", 400)
    return value


#: Deepest nesting of arrays and objects a request body may have.
MAX_NESTING = 64


def _nesting(value: Any) -> int:
    """How deeply ``value``'s lists and dicts nest (without recursing; stops past the limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack and deepest <= MAX_NESTING:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown paths answer in JSON like everything else, naming what was asked for."""
    return _error(f"no route {request.method} {request.url.path}", 404)


#: The answer to each error the project raises on purpose; handlers just let them rise. The
#: first entry that matches wins: a subclass comes before its base.
ERROR_STATUS: dict[type[OrchestratorError], int] = {
    SpecError: 400,
    AmbiguousRefError: 400,  # a prefix of several: give more characters
    NotFoundError: 404,
    SweepBusyError: 409,
    UnavailableError: 503,
}


async def failure(request: Request, exc: Exception) -> Response:
    """Every exception a handler lets rise, as JSON: the project's own errors with their
    status (:data:`ERROR_STATUS`, else 500) and text; any other exception's text is not
    shown."""
    if not isinstance(exc, OrchestratorError):
        return _error("internal error", 500)
    status = next((code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind)), 500)
    return _error(str(exc), status)


def _size_of(path: Path) -> int:
    """A log's size now (0 while it does not exist)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _page(request: Request) -> tuple[int | None, int] | Response:
    """``?limit=&offset=`` (whole numbers; no limit: every run from ``offset``), or a 400."""
    values: list[int | None] = []
    for name in ("limit", "offset"):
        text = request.query_params.get(name, "")
        if text and not (text.isascii() and text.isdigit()):
            return _error(f"{name} must be a whole number >= 0, got {text!r}", 400)
        values.append(int(text) if text else None)
    return values[0], values[1] or 0


#: Points per run and metric name a series answer gives by default, and at most.
MAX_POINTS = (1000, 10_000)


def _max_points(request: Request) -> int | Response:
    """``?max_points=N`` (2 to 10,000; default 1,000), or a 400."""
    text = request.query_params.get("max_points")
    if text is None:
        return MAX_POINTS[0]
    digits = text.isascii() and text.isdigit() and len(text) <= 6  # int() of 5,000 raises
    if not (digits and 2 <= int(text) <= MAX_POINTS[1]):
        limit = MAX_POINTS[1]
        return _error(f"max_points must be a whole number from 2 to {limit}, got {text!r}", 400)
    return int(text)


def _names(request: Request) -> list[str] | None:
    """``?names=a,b`` as a list; None (every name) when absent or empty."""
    names = [n for n in request.query_params.get("names", "").split(",") if n]
    return names or None


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


class Api:
    """The handlers that need the daemon's state, bound to it once when the app is built."""

    def __init__(self, manager: SweepManager, hub: Hub, home: Path) -> None:
        self.manager = manager
        self.hub = hub
        self.home = home
        self.journal = manager.journal
        #: The web page's heavy reads, off the event loop (see :mod:`.page_reads`).
        self.page = PageReads(self.journal.path)
        self.board = Board()

    async def _sweep(self, request: Request) -> SweepRow:
        """The sweep the path names, read after a journal flush (a sweep just accepted is
        found by its prefix too)."""
        await self.journal.flush()
        return find_sweep(self.journal, request.path_params["sweep"])

    async def _run(self, request: Request) -> RunRow:
        """The run the path names, read after a journal flush (the runs a sweep just created
        are batched: without it a running run could be missing)."""
        await self.journal.flush()
        return find_run(self.journal, request.path_params["run"])

    async def health(self, request: Request) -> Response:
        """Liveness: answers as long as the event loop does; ``degraded``, with the error,
        while the journal cannot write (restarting would not help: the disk is full)."""
        error = self.journal.write_error
        if error is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "degraded", "journal": error})

    async def resources(self, request: Request) -> Response:
        """The machine's GPUs, CPUs and memory that runs are given, and what is free now."""
        pool = self.manager.resources
        return JSONResponse(pool.describe() if pool is not None else None)

    async def ready(self, request: Request) -> Response:
        """Readiness: 503 while the daemon takes no sweeps: it is shutting down, or its
        journal cannot write (submissions would get 503 too)."""
        if not self.manager.accepting:
            return JSONResponse({"ready": False, "reason": "shutting down"}, status_code=503)
        error = self.journal.write_error
        if error is not None:
            return JSONResponse({"ready": False, "journal": error}, status_code=503)
        return JSONResponse({"ready": True, "sweeps": len(self.manager.sweeps)})

    async def submit(self, request: Request) -> Response:
        """Start a sweep from a :class:`Submission`; 201 with its id, kind (``dag``: a
        pipeline), run count (a pipeline: its node count) and warnings, sent only once the
        sweep is committed to the journal (503 when it cannot be)."""
        body = await _json_body(request, b"null")
        if isinstance(body, Response):
            return body
        try:
            submission = msgspec.convert(body, Submission)
        except msgspec.ValidationError as exc:
            return _error(f"body: {exc}", 400)
        sweep_id, total, warnings, kind = await self.manager.submit(submission)
        return JSONResponse(
            {"sweep": sweep_id, "kind": kind, "runs": total, "warnings": warnings},
            status_code=201,
        )

    async def list_sweeps(self, request: Request) -> Response:
        """The newest sweeps (``?limit=``, at most 10,000), read after a journal flush so a
        sweep just submitted is listed."""
        await self.journal.flush()
        limit_text = request.query_params.get("limit", "200")
        digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6
        limit = int(limit_text) if digits else 200
        rows = self.journal.latest_sweeps(min(limit, 10_000))
        here, board = frozenset(self.manager.sweeps), self.board

        def items(reader: SeriesReader) -> list[dict[str, Any]]:
            return [board.item(reader, row, here) for row in rows]

        return JSONResponse(await self.page.run(items))

    async def sweep_metrics(self, request: Request) -> Response:
        """Each metric's series of the newest run of each configuration, thinned to
        ``max_points`` per run and name (``names``: only those)."""
        k = _max_points(request)
        if isinstance(k, Response):
            return k
        names = _names(request)
        sweep = await self._sweep(request)

        def read(reader: SeriesReader) -> bytes:
            series = reader.sweep_series(sweep.id, names, k)
            return msgspec.json.encode({"sweep": sweep.id, "metrics": series})

        return _json(await self.page.run(read))

    async def sweep_metric_names(self, request: Request) -> Response:
        """Every metric name the sweep's runs reported (for the page's metric chooser)."""
        sweep = await self._sweep(request)
        names = await self.page.run(lambda reader: reader.metric_names(sweep.id))
        return JSONResponse({"names": names})

    async def run_metrics(self, request: Request) -> Response:
        """One run's series, thinned to ``max_points`` per name (``names``: only those)."""
        k = _max_points(request)
        if isinstance(k, Response):
            return k
        names = _names(request)
        run = await self._run(request)

        def read(reader: SeriesReader) -> bytes:
            series = reader.run_series(run.id, run.idx, names, k)
            flat = {name: by_index[run.idx] for name, by_index in series.items()}
            return msgspec.json.encode({"run": run.id, "metrics": flat})

        return _json(await self.page.run(read))

    async def show_sweep(self, request: Request) -> Response:
        """One sweep and its runs (``?limit=&offset=``: one page of them, with ``runs_total``
        and ``next_offset``); encoded by msgspec, which knows the read model's types."""
        page = _page(request)
        if isinstance(page, Response):
            return page
        await self.journal.flush()
        body = sweep_detail(
            self.journal,
            request.path_params["sweep"],
            sort=request.query_params.get("sort") or None,
            every_attempt=request.query_params.get("all") == "1",
            limit=page[0],
            offset=page[1],
        )
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def stop_sweep(self, request: Request) -> Response:
        """202 with the sweep's id: the stop is requested, not done (runs get their grace
        period); the event feed reports them ending. A pipeline's node: that node alone stops.
        404 when it does not run here."""
        sweep = await self._sweep(request)
        if self.manager.stop_sweep(sweep.id):
            return JSONResponse({"stopping": True, "sweep": sweep.id}, status_code=202)
        return _error(f"sweep {sweep.id[:12]} is {sweep.state}, not running in this daemon", 404)

    async def add_configurations(self, request: Request) -> Response:
        """Queue more configurations on an open sweep; 202 with their indexes once they are
        committed to the journal (503 when they cannot be)."""
        body = await _json_body(request, b"null")
        if isinstance(body, Response):
            return body
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list):
            return _error('body: expected {"values": [{...}, ...]}', 400)
        sweep = await self._sweep(request)
        indexes = await self.manager.add_configurations(sweep.id, values)
        return JSONResponse({"indexes": indexes}, status_code=202)

    async def close_sweep(self, request: Request) -> Response:
        """Take no more configurations: the sweep ends when the queued ones have run (202
        once that is committed to the journal, 503 when it cannot be)."""
        sweep = await self._sweep(request)
        closed = await self.manager.close_sweep(sweep.id)
        if closed:
            return JSONResponse({"closed": True}, status_code=202)
        return _error("no open sweep with that id", 404)

    async def resume_sweep(self, request: Request) -> Response:
        """Run a stored sweep's unfinished (or ``only`` the given states') runs again; an
        empty body means the defaults. 202 once that is committed to the journal (else 503)."""
        body = await _json_body(request, b"{}")
        if isinstance(body, Response):
            return body
        only = body.get("only") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not (
            only is None or (isinstance(only, list) and all(isinstance(s, str) for s in only))
        ):
            return _error('body: expected {"force": false, "only": ["failed"]}', 400)
        sweep = await self._sweep(request)
        sweep_id, total = await self.manager.resume(
            sweep.id,
            force=bool(body.get("force")),
            only_states=set(only) if only else None,
        )
        return JSONResponse({"sweep": sweep_id, "runs": total}, status_code=202)

    async def stop_run(self, request: Request) -> Response:
        """Stop one run, whichever sweep it belongs to: 202 with its id, 404 when it does
        not run here."""
        run = await self._run(request)
        if self.manager.stop_run(run.id):
            return JSONResponse({"stopping": True, "run": run.id}, status_code=202)
        return _error(f"run {run.id[:12]} is {run.state}, not running in this daemon", 404)

    async def events(self, request: Request) -> Response:
        """Every event as SSE, replayed from ``Last-Event-ID`` when the client sends one."""
        after = request.headers.get("last-event-id")
        stream = self.hub.follow(
            lambda event: True, int(after) if after and after.isdigit() else None
        )
        return StreamingResponse(
            event_frames(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    async def show_run(self, request: Request) -> Response:
        """One run in full (see :func:`~orchestrator.history.run_detail`)."""
        await self.journal.flush()
        body = run_detail(self.journal, request.path_params["run"])
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def diff_runs(self, request: Request) -> Response:
        """What differs between the run in the path and ``?with=RUN``."""
        other = request.query_params.get("with")
        if not other:
            return _error("with: expected the run to compare with", 400)
        await self.journal.flush()
        body = run_diff(self.journal, request.path_params["run"], other)
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def logs(self, request: Request) -> Response:
        """A run's stdout or stderr from an offset: as plain text, or with ``?follow=1`` as
        SSE until the run ends (ids are byte offsets, for Last-Event-ID)."""
        row = await self._run(request)
        stream = request.query_params.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            return _error("stream: expected stdout or stderr", 400)
        offset_text = request.headers.get("last-event-id") or request.query_params.get("offset")
        digits = offset_text and offset_text.isascii() and offset_text.isdigit()
        offset = int(offset_text) if offset_text and digits else 0
        path = RunLayout(self.home, row.id).run_dir / f"{stream}.log"
        if request.query_params.get("follow") not in ("1", "true"):
            if request.method == "HEAD":  # the size only (the page asks where the end is)
                size = await anyio.to_thread.run_sync(_size_of, path)
                left = str(max(0, size - offset))
                return Response(media_type="text/plain", headers={"Content-Length": left})
            # Sent one chunk at a time, from ``offset`` to the size it has now: a log may be
            # gigabytes, and several clients may read it at once.
            chunks, length = await log_range(path, offset)
            return StreamingResponse(
                chunks, media_type="text/plain", headers={"Content-Length": str(length)}
            )

        def concerns(event: Event) -> bool:
            return isinstance(event, LogLine | RunStateChanged) and event.run_id == row.id

        return StreamingResponse(
            log_frames(path, offset, self.hub.follow(concerns), self.journal, row.id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )
