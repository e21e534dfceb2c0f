"""Runs' exit statuses as their supervisor recorded them: what crash recovery trusts.

One file per orchestrator process and home folder, ``HOME/exit_status/<pid>-<start>.jsonl``
(the orchestrator's pid and process start time, as its sweeps record them), not a file per
run: creating a file costs more than the run it would describe when runs are small. The
orchestrator creates it on its first run there, locks it (``flock``) and holds it open for
as long as it lives. For each run it appends ``{"run": ID}`` (this attempt has no status
yet) and hands a copy of the descriptor to the run supervisor
(:mod:`orchestrator.executors.supervisor`), which appends ``{"run": ID, "exit_code": N,
"orphaned": B}`` when the run exits, before it is reaped, then closes its copy. The lock
lasts while any copy is open: once the orchestrator is gone, a locked file means its
supervisor still holds a run (it may be killing it: wait for it); an unlocked one is the
final word, the last line about a run saying how it ended, or that nobody saw it end.

Appends of a line are atomic (``O_APPEND``), so the orchestrator's and the supervisor's lines
never mix. Homes written before this layout have ``HOME/runs/<run id>/exit_status.json`` per
run; :func:`read_exit_status` still reads those.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.executors.supervisor import STATUS_FILE
from orchestrator.procinfo import is_same_process, start_time
from orchestrator.store.layout import exit_status_path

__all__ = [
    "ExitStatus",
    "StartedRun",
    "is_open",
    "read_exit_status",
    "read_exit_statuses",
    "read_status_file",
    "remove_finished_files",
    "start_record",
    "started_runs",
    "status_file",
    "statuses_in",
]

#: Seconds between looks at a status file a supervisor still holds.
_POLL_S = 0.01


@dataclass(frozen=True)
class ExitStatus:
    """How a run's process ended."""

    #: Its exit code; negative: killed by that signal.
    exit_code: int
    #: The supervisor killed it because its orchestrator was gone.
    orphaned: bool


class _Held:
    """This process's status files, by home: created, locked and kept open on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[Path, int] = {}

    def is_open(self, home: Path) -> bool:
        return home in self._files

    def get(self, home: Path) -> int:
        with self._lock:
            fd = self._files.get(home)
            if fd is None:
                fd = self._files[home] = self._open(home)
            return fd

    @staticmethod
    def _open(home: Path) -> int:
        pid = os.getpid()
        path = exit_status_path(home, pid, start_time(pid))
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's files are not ours (and must not stay locked
        because we live on)."""
        self._lock = threading.Lock()
        for fd in self._files.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files = {}


_HELD = _Held()
os.register_at_fork(after_in_child=_HELD.forget_after_fork)


def is_open(home: Path) -> bool:
    """Whether this process's status file under ``home`` is open already (using it then
    costs one append)."""
    return _HELD.is_open(home)


def start_record(run_id: str, identity: Mapping[str, Any] | None = None) -> bytes:
    """The line that opens a run attempt: no status yet (an earlier attempt's goes); with
    the run's ``identity`` (its sweep, index, params hash, params, an adaptive search's
    suggestion: ``Job.identity``) for :func:`started_runs`."""
    return json.dumps({"run": run_id, **(identity or {})}).encode() + b"\n"


def status_file(home: Path, run_id: str, identity: Mapping[str, Any] | None = None) -> int:
    """This process's status file under ``home``, with a new attempt of ``run_id`` recorded;
    the descriptor is for the supervisor (send a copy; this process keeps it open)."""
    fd = _HELD.get(home)
    os.write(fd, start_record(run_id, identity))
    return fd


def _wait_unlocked(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


def _parse(line: bytes) -> ExitStatus | None:
    try:
        record = json.loads(line)
        return ExitStatus(int(record["exit_code"]), bool(record["orphaned"]))
    except (ValueError, KeyError, TypeError):
        return None


def read_exit_statuses(
    path: Path, run_ids: list[str], deadline: float
) -> dict[str, ExitStatus | None]:
    """What the status file at ``path`` says of each of ``run_ids`` it mentions: its last
    line's status (None: that attempt never ended where anyone saw). Waits while a
    supervisor still holds the file, until ``deadline`` (a ``time.monotonic()``); an absent
    or still-held file says nothing."""
    data = read_status_file(path, deadline)
    return {} if data is None else statuses_in(data, run_ids)


def read_status_file(path: Path, deadline: float) -> bytes | None:
    """The content of the status file at ``path`` once no supervisor holds it (waiting until
    ``deadline``, a ``time.monotonic()``); None: absent, or still held then."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _wait_unlocked(fd, deadline):
            return None
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def statuses_in(data: bytes, run_ids: list[str]) -> dict[str, ExitStatus | None]:
    """What the status file content ``data`` says of each of ``run_ids`` it mentions (its
    last line about it). Found by a search from the end, not by parsing every line: the file
    of a long-lived daemon holds a line or two per run it ever ran."""
    found: dict[str, ExitStatus | None] = {}
    for run_id in run_ids:
        at = data.rfind(b'{"run": ' + json.dumps(run_id).encode())
        if at >= 0:
            end = data.find(b"\n", at)
            found[run_id] = _parse(data[at : end if end >= 0 else len(data)])
    return found


class StartedRun(NamedTuple):
    """What a start line says of its run (:func:`start_record`'s identity)."""

    run_index: int
    params_hash: str
    #: Its params as JSON text ("{}" in lines written before they were carried).
    params: str
    #: An adaptive search's suggestion for it: its params, place and the index it resumes
    #: (None: none); None when the run is not an adaptive search's.
    suggestion: tuple[dict[str, Any], dict[str, Any], int | None] | None


def started_runs(path: Path) -> Iterator[tuple[str, str, StartedRun]]:
    """The runs whose start the status file at ``path`` records: (sweep id, run id, what
    the line says), in the file's order, read line by line (a 10^6-run sweep's file is
    hundreds of MB). Start lines are written before their run starts, so they are whole
    even if the file is still held; an unreadable file records none."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if b'"sweep": ' in line:
                    found = _start_line(line)
                    if found is not None:
                        yield found
    except OSError:
        return


def _start_line(line: bytes) -> tuple[str, str, StartedRun] | None:
    try:
        record = json.loads(line)
        params = record.get("params", "{}")
        found = StartedRun(
            int(record["index"]),
            str(record["params_hash"]),
            params if isinstance(params, str) else "{}",
            _suggestion(record.get("suggestion")),
        )
        return str(record["sweep"]), str(record["run"]), found
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _suggestion(given: Any) -> tuple[dict[str, Any], dict[str, Any], int | None] | None:
    """A start line's ``suggestion`` as :meth:`Journal.add_suggestion` takes it (None: the
    line has none, or not as ``job_for`` writes it)."""
    if not isinstance(given, dict):
        return None
    params, place, resumes = given.get("params"), given.get("place"), given.get("resumes")
    return (
        params if isinstance(params, dict) else {},
        place if isinstance(place, dict) else {},
        resumes if isinstance(resumes, int) else None,
    )


def remove_finished_files(home: Path, keep: set[tuple[int, int]]) -> None:
    """Remove the status files of orchestrator processes that are gone, whose supervisor is
    done (unlocked) and that drive no unfinished sweep (``keep``: their pid and start time,
    0 where unknown): recovery has ended their runs and needs them no more. Best effort."""
    folder = home / "exit_status"
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid, _, start = name.removesuffix(".jsonl").partition("-")
        if not (name.endswith(".jsonl") and pid.isdigit() and start.isdigit()):
            continue
        if (int(pid), int(start)) in keep or is_same_process(int(pid), int(start) or None):
            continue
        path = folder / name
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _wait_unlocked(fd, 0.0):
                    os.unlink(path)
            finally:
                os.close(fd)


def read_exit_status(run_dir: Path, deadline: float) -> ExitStatus | None:
    """The status in ``run_dir``'s own ``exit_status.json``, as homes made before the shared
    status files have them; None when there is none. Waits while it is locked, until
    ``deadline``."""
    try:
        fd = os.open(run_dir / STATUS_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _wait_unlocked(fd, deadline):
            return None
        data = os.read(fd, 4096)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return _parse(data)
