"""Run a job as a local subprocess in its own process group, streaming its output.

Runs are children of the run supervisor (:mod:`orchestrator.executors.supervisor`), one small
process per orchestrator process, not of the orchestrator itself. That is what keeps a run
from outliving its orchestrator and its exit status from dying with it: when the orchestrator
dies (``kill -9`` included) the supervisor reads EOF on a socket only the orchestrator held and
sends each run's group SIGTERM, then SIGKILL 0.5 s later; and however a run ends, the
supervisor writes its exit status to ``HOME/runs/<run id>/exit_status.json`` before its pid
disappears, which crash recovery trusts (:mod:`orchestrator.engine.recovery`). The cost is one
process per orchestrator and a socket round trip per run, in place of an in-process fork and a
child-watcher thread per run (``benchmarks/bench_overhead.py``).

The process starts in a new session so that stopping it (SIGTERM to the group, a grace
period, then SIGKILL) reaches its grandchildren too; when the main process exits, whatever is
left of its group is killed, so nothing outlives its run. Output is read in chunks, written to
the run's log files byte for byte, and split into lines for the sink; a line longer than
``MAX_LINE`` is split, so memory stays bounded whatever the child writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

from orchestrator.exceptions import ExecutorError
from orchestrator.executors.base import Job, Outcome, OutputSink, StopRequest
from orchestrator.executors.exit_status import create_exit_status
from orchestrator.executors.init import prepare_init
from orchestrator.executors.supervised import SupervisedProcess
from orchestrator.store.layout import git_cache_dir

__all__ = ["MAX_LINE", "LocalExecutor"]

#: Longest line handed to the sink; longer ones are split (1 MiB).
MAX_LINE = 1024 * 1024
_CHUNK = 64 * 1024
#: Seconds the output pipes may stay open after the process group is gone.
_DRAIN_S = 2.0


async def _read(fd: int) -> bytes:
    """The next chunk from a non-blocking pipe; ``b""`` at its end."""
    while True:
        try:
            return os.read(fd, _CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(fd)


async def _pump(fd: int, name: str, log: BinaryIO, sink: OutputSink) -> None:
    """Copy the pipe ``fd`` to ``log`` (in a worker thread, chunk by chunk) and to ``sink`` by
    line; closes the log."""
    pending = b""
    try:
        while chunk := await _read(fd):
            await anyio.to_thread.run_sync(log.write, chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                while len(line) > MAX_LINE:
                    await sink.line(name, line[:MAX_LINE].decode(errors="replace"))
                    line = line[MAX_LINE:]
                await sink.line(name, line.decode(errors="replace"))
            while len(pending) > MAX_LINE:
                await sink.line(name, pending[:MAX_LINE].decode(errors="replace"))
                pending = pending[MAX_LINE:]
        if pending:
            await sink.line(name, pending.decode(errors="replace"))
    finally:
        log.close()


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
    """What a run needs from the file system, made in one worker-thread trip."""

    logs: tuple[BinaryIO, BinaryIO]
    #: The working folder, absolute (the supervisor's is not ours).
    cwd: str
    #: Its exit-status file, created empty and locked, for the supervisor to fill.
    status: int

    @classmethod
    def make(cls, job: Job) -> _RunFiles:
        layout = job.layout
        os.makedirs(layout.outputs, exist_ok=True)  # the run folder too (exists on a retry)
        if not os.path.isdir(job.cwd):
            os.makedirs(job.cwd, exist_ok=True)
        with contextlib.ExitStack() as made:
            stdout = made.enter_context(open(layout.stdout, "ab", buffering=0))
            stderr = made.enter_context(open(layout.stderr, "ab", buffering=0))
            status = create_exit_status(layout.run_dir)
            made.pop_all()
        return cls((stdout, stderr), os.path.abspath(job.cwd), status)


async def _start(job: Job, files: _RunFiles) -> tuple[SupervisedProcess, tuple[int, int]]:
    """Start ``job`` through the supervisor; the process, and the read ends of its stdout and
    stderr pipes (non-blocking; the caller closes them)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await SupervisedProcess.start(
            job.argv, job.env, files.cwd, out_w, err_w, files.status
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
            files = await anyio.to_thread.run_sync(_RunFiles.make, job)
        except OSError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc}")
        logs = files.logs
        with contextlib.ExitStack() as owned:  # the files, until the run and the pumps own them
            for log in logs:
                owned.callback(log.close)
            owned.callback(os.close, files.status)
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
            except OSError as exc:
                return Outcome(None, error=_start_error(job.argv, exc))
            owned.pop_all()  # from here on the pumps close the logs
        os.close(files.status)  # the supervisor holds the file (and its lock) now
        try:
            return await self._supervise(process, pipes, logs, sink, stop, started)
        finally:
            # Cancelled (the engine is going down) or failed: the whole group goes with us.
            process.close()
            for fd in pipes:
                os.close(fd)
            for log in logs:
                log.close()

    async def _supervise(
        self,
        process: SupervisedProcess,
        pipes: tuple[int, int],
        logs: tuple[BinaryIO, BinaryIO],
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
                pumps.start_soon(_pump, pipes[0], "stdout", logs[0], sink)
                pumps.start_soon(_pump, pipes[1], "stderr", logs[1], sink)
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
