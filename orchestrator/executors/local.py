"""Run a job as a local subprocess in its own process group, streaming its output.

Runs are children of the run supervisor (:mod:`orchestrator.executors.supervisor`), one small
process per orchestrator process, not of the orchestrator itself. That is what keeps a run
from outliving its orchestrator and its exit status from dying with it: when the orchestrator
dies (``kill -9`` included) the supervisor reads EOF on a socket only the orchestrator held and
sends each run's group SIGTERM, then SIGKILL 0.5 s later; and however a run ends, the
supervisor appends its exit status to this process's status file (one per home,
:mod:`orchestrator.executors.exit_status`) before its pid disappears, which crash recovery
trusts (:mod:`orchestrator.engine.recovery`). The cost is one process per orchestrator and
a message each way per run on one shared socket, in place of an in-process fork and a
child-watcher thread per run (``benchmarks/bench_overhead.py``).

The process starts in a new session so that stopping it (SIGTERM to the group, a grace
period, then SIGKILL) reaches its grandchildren too; when the main process exits, whatever is
left of its group is killed, so nothing outlives its run. Output is read in chunks (up to
1 MiB, from pipes made that large for a run that writes flat out), written to the run's log files
byte for byte (each created at the first byte of its stream: a silent run has none), and
handed to the sink a chunk of whole lines at a time; a line longer than ``MAX_LINE`` is
split, so memory stays bounded whatever the child writes.

A run is followed by the one task that executes it (:class:`_Watch`), woken by event-loop
callbacks (its pipes readable, its exit code in, a stop requested): no task, task group or
cancel scope per stream or per stop watch, which for a short run cost more than the run.
"""

from __future__ import annotations

import asyncio
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
from orchestrator.procinfo import forget_start_time, tell_start_time
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


class _Log:
    """A run's log file, created at its first byte: a run that writes nothing has none.

    A small chunk is written from the event loop (cheaper than a trip to a worker thread); a
    large one (the run writes flat out) in a worker thread, while the next chunk is read and
    scanned: at most one write in flight, so memory stays bounded and bytes in order. A
    write's error is raised by the next ``write`` or by ``close``."""

    def __init__(self, path: Callable[[], Path]) -> None:
        #: The file's path, asked for at the first byte (a silent run makes no path either).
        self.path = path
        self.fd: int | None = None
        self.in_flight: asyncio.Future[None] | None = None

    async def write(self, data: memoryview | bytes) -> None:
        await self._settle()
        if len(data) < _THREAD_WRITE:
            self._write(data)
        else:
            self.in_flight = asyncio.get_running_loop().run_in_executor(None, self._write, data)

    async def close(self) -> None:
        try:
            if self.in_flight is not None:
                with anyio.CancelScope(shield=True):  # it still holds the descriptor
                    await self._settle()
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    async def _settle(self) -> None:
        """Wait for the write in flight (``asyncio.wait``: a cancelled waiter leaves it be);
        raise its error."""
        if self.in_flight is not None:
            await asyncio.wait([self.in_flight])
            done, self.in_flight = self.in_flight, None
            done.result()

    def _write(self, view: memoryview | bytes) -> None:
        if self.fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self.fd = os.open(self.path(), flags, 0o666)
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


class _Stream:
    """One output pipe of a run (non-blocking): copied to its log, a chunk per write, and to
    the sink, a chunk of whole lines per call (the partial line at a chunk's end waits for
    the next).

    The first read makes no buffer (a silent stream's only read is its end); later reads go
    to a 64 KiB buffer, and a stream that fills it gets two of ``_CHUNK`` bytes, used in
    turn, so that one can be read into while the other is written in a worker thread, and
    a larger pipe."""

    #: Most chunks read in one turn: a stream that writes flat out lets the others in.
    TURN = 4

    def __init__(self, fd: int, name: str, log: _Log) -> None:
        self.fd = fd
        self.name = name
        self.log = log
        self.buffers: list[bytearray] = []
        self.turn = 0
        self.pending = b""
        #: Until its end is read; ``readable``: the loop says there is something to read.
        self.open = True
        self.readable = False

    async def drain(self, sink: OutputSink) -> None:
        """Read (up to :attr:`TURN` chunks) until the pipe is empty or ends; ``readable``
        stays set when there may be more."""
        self.readable = False
        for _ in range(self.TURN):
            try:
                if not self.buffers:
                    data: bytes | bytearray = os.read(self.fd, _FIRST_CHUNK)
                    size = len(data)
                    self.buffers = [bytearray(_FIRST_CHUNK)] if size else []
                    full = size == _FIRST_CHUNK
                else:
                    data = self.buffers[self.turn]
                    size = os.readv(self.fd, [data])
                    full = size == len(data)
            except BlockingIOError:
                return
            if not size:
                await self.end(sink)
                return
            await self._take(data, size, sink)
            if full and len(data) < _CHUNK:
                self.buffers, self.turn = [bytearray(_CHUNK), bytearray(_CHUNK)], 0
                _enlarge(self.fd)
            else:
                self.turn = (self.turn + 1) % len(self.buffers)
        self.readable = True

    async def _take(self, chunk: bytes | bytearray, size: int, sink: OutputSink) -> None:
        await self.log.write(memoryview(chunk)[:size])
        name, start = self.name, 0
        if self.pending:  # the line begun in an earlier chunk: its end, if it is in this one
            first = chunk.find(b"\n", 0, size)
            if first < 0:
                self.pending += chunk[:size]
                if len(self.pending) > MAX_LINE:
                    await sink.chunk(name, self.pending, 0, MAX_LINE)
                    self.pending = self.pending[MAX_LINE:]
            else:
                await _long_line(sink, name, self.pending + chunk[:first])
                self.pending, start = b"", first + 1
        if not self.pending:
            end = chunk.rfind(b"\n", start, size)
            if end < 0:
                self.pending = bytes(chunk[start:size])
            else:
                await sink.chunk(name, chunk, start, end)
                self.pending = bytes(chunk[end + 1 : size])

    async def end(self, sink: OutputSink | None) -> None:
        """The stream is done (at its end; ``sink`` None: given up on): its last partial
        line handed over, its log closed."""
        if not self.open:
            return
        self.open = False
        try:
            if self.pending and sink is not None:
                await _long_line(sink, self.name, self.pending)
            self.pending = b""
        finally:
            await self.log.close()


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
        layout = job.layout  # parents first: each is one mkdir
        # The working folder is not among them: the supervisor enters it, and makes it only
        # when it is missing (one mkdir saved per run where it exists, as it usually does).
        folders = [str(layout.run_dir), str(layout.outputs)]
        if job.init:
            await anyio.to_thread.run_sync(_make_folders, folders)
        if is_open(job.layout.home):
            status = status_file(job.layout.home, job.run_id, job.identity)  # one small append
        else:
            status = await anyio.to_thread.run_sync(
                status_file, job.layout.home, job.run_id, job.identity
            )
        return cls(cwd, status, folders)


def _make_folders(folders: list[str]) -> None:
    for folder in folders:
        os.makedirs(folder, exist_ok=True)


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
            process = await SupervisedProcess.start(
                job.run_id, job.argv, job.env, files.cwd, files.folders, files.status
            )
        except FolderError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc.strerror}")
        except OSError as exc:
            return Outcome(None, error=_start_error(job.argv, exc))
        try:
            return await self._supervise(process, job.layout, sink, stop, started)
        finally:
            # Cancelled (the engine is going down) or failed: the whole group goes with us.
            process.close()

    async def _supervise(
        self,
        process: SupervisedProcess,
        layout: RunLayout,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        watch = _Watch(process, stop)
        out, err = process.pipes
        streams = (
            _Stream(out, "stdout", _Log(lambda: layout.stdout)),
            _Stream(err, "stderr", _Log(lambda: layout.stderr)),
        )
        try:
            # The run is RUNNING before its first line is handled (the pipes hold output
            # meanwhile), so no LogLine ever precedes its run's RunStateChanged(running).
            # Its start time is the supervisor's (read before it could be reaped), not
            # another read of /proc here.
            tell_start_time(process.pid, process.start_time)
            try:
                await started(process.pid)
            finally:
                forget_start_time(process.pid)
            code = await watch.follow(streams, sink)
        except BaseException:
            watch.close()
            with contextlib.suppress(OSError):  # what went wrong first is what is raised
                await _end_all(streams)
            raise
        watch.close()
        await _end_all(streams)
        cpu_s, max_rss = process.usage or (None, None)
        return Outcome(code, stopped=stop.is_requested, cpu_s=cpu_s, max_rss=max_rss)


async def _end_all(streams: tuple[_Stream, ...]) -> None:
    """End every stream (its log closed, even when another's close fails); raise the first
    error (a log write that failed)."""
    error: OSError | None = None
    for stream in streams:
        try:
            await stream.end(None)
        except OSError as exc:
            error = error or exc
    if error is not None:
        raise error


class _Watch:
    """Follows one run in its own task, woken by event-loop callbacks: a pipe readable, the
    exit code in (the supervisor's reader), the drain's deadline; a stop request is acted
    on in its callback. One task per run, no task group, cancel scope or poll registration
    of its own beyond the pipes' (asyncio's ``add_reader``: the orchestrator runs on asyncio
    only; ``benchmarks/bench_overhead.py`` says what the tasks cost)."""

    def __init__(self, process: SupervisedProcess, stop: StopRequest) -> None:
        self.loop = asyncio.get_running_loop()
        self.process = process
        self.stop = stop
        self.wake: asyncio.Future[None] | None = None
        self.readers: set[int] = set()
        self.timers: list[asyncio.TimerHandle] = []
        self.terminated = False
        process.exited.add_done_callback(self._poke)
        self.forget_stop = stop.on_request(self._on_stop)

    async def follow(self, streams: tuple[_Stream, ...], sink: OutputSink) -> int:
        """Copy the output until the run has ended and its pipes are closed (or have been
        open ``_DRAIN_S`` past its end: a daemonised grandchild holds them); its exit code,
        once the status is on disk and what was left of its group is killed."""
        for stream in streams:  # read first, listen only if empty: a short run is over by now
            stream.readable = True
        exited = self.process.exited
        drained_by: float | None = None
        while True:
            for stream in streams:
                if stream.readable:
                    await stream.drain(sink)
                    if stream.open and not stream.readable:
                        self._listen(stream)
            if exited.done():
                if exited.exception() is not None or not any(s.open for s in streams):
                    break
                if drained_by is None:
                    drained_by = self.loop.time() + _DRAIN_S
                    self.timers.append(self.loop.call_at(drained_by, self._poke))
                elif self.loop.time() >= drained_by:
                    break
            if any(s.readable for s in streams):
                await anyio.lowlevel.checkpoint()
            else:
                self.wake = self.loop.create_future()
                await self.wake
        return self.process.result_of(exited)

    def close(self) -> None:
        self.forget_stop()
        for fd in self.readers:
            self.loop.remove_reader(fd)
        self.readers.clear()
        for timer in self.timers:
            timer.cancel()
        self.process.exited.remove_done_callback(self._poke)

    def _poke(self, _: object = None) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _listen(self, stream: _Stream) -> None:
        self.loop.add_reader(stream.fd, self._readable, stream)
        self.readers.add(stream.fd)

    def _readable(self, stream: _Stream) -> None:
        """One-shot: the stream's task reads until the pipe is empty, then listens again."""
        self.loop.remove_reader(stream.fd)
        self.readers.discard(stream.fd)
        stream.readable = True
        self._poke()

    def _on_stop(self) -> None:
        """SIGTERM to the group at the first request; SIGKILL after its grace, or at once when
        a request says so."""
        kill_now = self.stop.kill_is_due
        if not self.terminated:
            self.terminated = True
            self.process.signal(signal.SIGTERM)
            if not kill_now:
                self.timers.append(
                    self.loop.call_later(self.stop.grace, self.process.signal, signal.SIGKILL)
                )
        if kill_now:
            self.process.signal(signal.SIGKILL)
