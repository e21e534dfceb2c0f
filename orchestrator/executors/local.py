"""Run a job as a local subprocess in its own process group, streaming its output.

Runs are children of the run supervisor (:mod:`orchestrator.executors.supervisor`), one small
process per orchestrator process, not of the orchestrator itself. That is what keeps a run
from outliving its orchestrator and its exit status from dying with it: when the orchestrator
dies (``kill -9`` included) the supervisor reads EOF on a socket only the orchestrator held and
sends each run's group SIGTERM, then SIGKILL 0.5 s later; and however a run ends, the
supervisor appends its exit status to this process's status file (one per home,
:mod:`orchestrator.executors.exit_status`) before its pid disappears, which crash recovery
trusts (:mod:`orchestrator.engine.recovery`). The cost is one process per orchestrator and
a socket round trip per run, in place of an in-process fork and a child-watcher thread per
run (``benchmarks/bench_overhead.py``).

The process starts in a new session so that stopping it (SIGTERM to the group, a grace
period, then SIGKILL) reaches its grandchildren too; when the main process exits, whatever is
left of its group is killed, so nothing outlives its run. Output is read in chunks (up to
1 MiB, from pipes made that large for a run that writes flat out), written to the run's log files
byte for byte (each created at the first byte of its stream: a silent run has none), and
handed to the sink a chunk of whole lines at a time; a line longer than ``MAX_LINE`` is
split, so memory stays bounded whatever the child writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from orchestrator.exceptions import ExecutorError
from orchestrator.executors.base import Job, Outcome, OutputSink, StopRequest
from orchestrator.executors.exit_status import is_open, status_file
from orchestrator.executors.init import prepare_init
from orchestrator.executors.supervised import FolderError, SupervisedProcess
from orchestrator.store.layout import RunLayout, git_cache_dir

__all__ = ["MAX_LINE", "LocalExecutor"]

#: Longest line handed to the sink; longer ones are split (1 MiB).
MAX_LINE = 1024 * 1024
#: Most bytes read at once: a line inside one read is never over ``MAX_LINE``.
_CHUNK = MAX_LINE
#: The read buffer a stream starts with; one that a read fills grows to ``_CHUNK``.
_FIRST_CHUNK = 64 * 1024
#: The capacity asked for the pipe of a stream that writes flat out (Linux: up to
#: ``/proc/sys/fs/pipe-max-size``, 1 MiB by default): fewer, larger reads. Only such streams
#: get it: large pipes count against the user's pipe quota (``pipe-user-pages-soft``), past
#: which every new pipe of the user's is made small.
_PIPE_SIZE = 1024 * 1024
#: Chunks this large are written to the log in a worker thread, overlapping the next read.
_THREAD_WRITE = 256 * 1024
#: Seconds the output pipes may stay open after the process group is gone.
_DRAIN_S = 2.0


async def _read(fd: int, buffer: bytearray) -> int:
    """Read the next chunk from a non-blocking pipe into ``buffer``; its size, 0 at the end.
    Buffers are reused: a fresh 1 MiB allocation per read costs more than the read itself."""
    while True:
        try:
            return os.readv(fd, [buffer])
        except BlockingIOError:
            await anyio.wait_readable(fd)


class _Log:
    """A run's log file, created at its first byte: a run that writes nothing has none.

    A small chunk is written from the event loop (cheaper than a trip to a worker thread); a
    large one (the run writes flat out) in a worker thread, while the pump reads and scans
    the next chunk: at most one write in flight, so memory stays bounded and bytes in order.
    A write's error is raised by the next ``write`` or by ``close``."""

    def __init__(self, path: Path, tasks: anyio.abc.TaskGroup) -> None:
        self.path = path
        self.tasks = tasks
        self.fd: int | None = None
        self.in_flight: anyio.Event | None = None
        self.error: OSError | None = None

    async def write(self, data: memoryview) -> None:
        await self._settle()
        if len(data) < _THREAD_WRITE:
            self._write(data)
        else:
            done = self.in_flight = anyio.Event()
            self.tasks.start_soon(self._write_off_loop, data, done)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):  # a write in flight still holds the descriptor
            if self.in_flight is not None:
                await self.in_flight.wait()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.error is not None:
            raise self.error

    async def _settle(self) -> None:
        if self.in_flight is not None:
            await self.in_flight.wait()
            self.in_flight = None
        if self.error is not None:
            raise self.error

    async def _write_off_loop(self, data: memoryview, done: anyio.Event) -> None:
        try:
            await anyio.to_thread.run_sync(self._write, data)
        except OSError as exc:
            self.error = exc
        finally:
            done.set()

    def _write(self, view: memoryview) -> None:
        if self.fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self.fd = os.open(self.path, flags, 0o666)
        while view:
            view = view[os.write(self.fd, view) :]


def _enlarge(pipe: int) -> None:
    """Ask for a larger pipe (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


async def _long_line(sink: OutputSink, name: str, line: bytes) -> None:
    """A line that may be over ``MAX_LINE``: handed over in ``MAX_LINE`` pieces."""
    while len(line) > MAX_LINE:
        await sink.chunk(name, line, 0, MAX_LINE)
        line = line[MAX_LINE:]
    await sink.chunk(name, line, 0, len(line))


async def _pump(fd: int, name: str, log: _Log, sink: OutputSink) -> None:
    """Copy the pipe ``fd`` to ``log``, a chunk per write, and to ``sink``, a chunk of whole
    lines per call (the partial line at a chunk's end waits for the next); closes the log.

    Reads go to a 64 KiB buffer, made once the stream has something to say (a silent run's
    stream never has one); a stream that fills it gets two of ``_CHUNK`` bytes, used in
    turn, so that one can be read into while the other is written in a worker thread, and
    a larger pipe."""
    turn = 0
    pending = b""
    try:
        await anyio.wait_readable(fd)
        buffers = [bytearray(_FIRST_CHUNK)]
        while size := await _read(fd, chunk := buffers[turn]):
            await log.write(memoryview(chunk)[:size])
            start = 0
            if pending:  # the line begun in an earlier chunk: its end, if it is in this one
                first = chunk.find(b"\n", 0, size)
                if first < 0:
                    pending += chunk[:size]
                    if len(pending) > MAX_LINE:
                        await sink.chunk(name, pending, 0, MAX_LINE)
                        pending = pending[MAX_LINE:]
                else:
                    await _long_line(sink, name, pending + chunk[:first])
                    pending, start = b"", first + 1
            if not pending:
                end = chunk.rfind(b"\n", start, size)
                if end < 0:
                    pending = bytes(chunk[start:size])
                else:
                    await sink.chunk(name, chunk, start, end)
                    pending = bytes(chunk[end + 1 : size])
            if size == len(chunk) and len(chunk) < _CHUNK:
                buffers, turn = [bytearray(_CHUNK), bytearray(_CHUNK)], 0
                _enlarge(fd)
            else:
                turn = (turn + 1) % len(buffers)
        if pending:
            await _long_line(sink, name, pending)
    finally:
        await log.close()


def _start_error(argv: list[str], exc: OSError) -> str:
    command = argv[0] if argv else ""
    if isinstance(exc, FileNotFoundError):
        hint = ""
        if " " in command:
            hint = (
                "; a plain-string command is one argv item: write a list, or "
                "[/bin/sh, -c, ...] for a shell line"
            )
        return f"command not found: {command!r}{hint}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {command!r} is not executable"
    return f"cannot start {command!r}: {exc.strerror or exc}"


@dataclass
class _RunFiles:
    """What a run needs from the file system before it starts."""

    #: Its working folder, absolute (the supervisor's is not ours).
    cwd: str
    #: This process's exit-status file (locked, kept open), this attempt recorded in it.
    status: int
    #: The folders the supervisor makes before it starts the run (if missing).
    folders: list[str]

    @classmethod
    async def prepare(cls, job: Job) -> _RunFiles:
        """Record the attempt and say which folders it needs. The folders are made by the
        supervisor (another process: their kernel time is not ours), except when ``init``
        works inside them first; the file system is left to a worker thread only then, and
        on a home's first run (its status file is created)."""
        cwd = os.path.abspath(job.cwd)  # noqa: ASYNC240 - no disk: at most a getcwd()
        folders = [str(job.layout.outputs), cwd]  # the run folder comes with ``outputs``
        if job.init:
            await anyio.to_thread.run_sync(_make_folders, folders)
        if is_open(job.layout.home):
            status = status_file(job.layout.home, job.run_id)  # one small append
        else:
            status = await anyio.to_thread.run_sync(status_file, job.layout.home, job.run_id)
        return cls(cwd, status, folders)


def _make_folders(folders: list[str]) -> None:
    for folder in folders:
        os.makedirs(folder, exist_ok=True)


async def _start(job: Job, files: _RunFiles) -> tuple[SupervisedProcess, tuple[int, int]]:
    """Start ``job`` through the supervisor; the process, and the read ends of its stdout and
    stderr pipes (non-blocking; the caller closes them)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await SupervisedProcess.start(
            job.run_id, job.argv, job.env, files.cwd, files.folders, (out_w, err_w), files.status
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:  # the supervisor has its own copies, passed on to the run
        os.close(out_w)
        os.close(err_w)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return process, (out_r, err_r)


class LocalExecutor:
    """Runs jobs as subprocesses of this machine."""

    def __init__(self, home: Path) -> None:
        self.home = home

    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        if not job.argv:
            return Outcome(None, error="empty command: give run.container.command or args")
        try:
            files = await _RunFiles.prepare(job)
        except OSError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc}")
        try:
            if job.init:
                await prepare_init(job.init, job.layout.artifacts, git_cache_dir(self.home))
        except ExecutorError as exc:
            return Outcome(None, error=str(exc))
        except OSError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc}")
        if stop.is_requested:
            return Outcome(None, stopped=True)
        try:
            process, pipes = await _start(job, files)
        except FolderError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc.strerror}")
        except OSError as exc:
            return Outcome(None, error=_start_error(job.argv, exc))
        try:
            return await self._supervise(process, pipes, job.layout, sink, stop, started)
        finally:
            # Cancelled (the engine is going down) or failed: the whole group goes with us.
            process.close()
            for fd in pipes:
                os.close(fd)

    async def _supervise(
        self,
        process: SupervisedProcess,
        pipes: tuple[int, int],
        layout: RunLayout,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        async with anyio.create_task_group() as pumps:
            async with anyio.create_task_group() as watch:
                watch.start_soon(self._watch_stop, process, stop)
                # The run is RUNNING before its first line is handled (the pipes hold output
                # meanwhile), so no LogLine ever precedes its run's RunStateChanged(running).
                await started(process.pid)
                stdout, stderr = _Log(layout.stdout, pumps), _Log(layout.stderr, pumps)
                pumps.start_soon(_pump, pipes[0], "stdout", stdout, sink)
                pumps.start_soon(_pump, pipes[1], "stderr", stderr, sink)
                # Returns once the exit status is on disk and what was left of the group
                # (daemonised grandchildren) is killed.
                code = await process.wait()
                watch.cancel_scope.cancel()
            pumps.cancel_scope.deadline = anyio.current_time() + _DRAIN_S
        return Outcome(code, stopped=stop.is_requested)

    @staticmethod
    async def _watch_stop(process: SupervisedProcess, stop: StopRequest) -> None:
        await stop.requested.wait()
        process.signal(signal.SIGTERM)
        with anyio.move_on_after(stop.grace):
            await stop.kill_now.wait()
        process.signal(signal.SIGKILL)
