"""Run a job as a local subprocess in its own process group, streaming its output.

The process starts with ``start_new_session`` so that stopping it (SIGTERM to the group, a grace
period, then SIGKILL) reaches its grandchildren too; when the main process exits, whatever is
left of its group is killed, so nothing outlives its run. Output is read in chunks, written to
the run's log files byte for byte, and split into lines for the sink; a line longer than
``MAX_LINE`` is split, so memory stays bounded whatever the child writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import anyio
from anyio.abc import ByteReceiveStream, Process

from orchestrator.exceptions import ExecutorError
from orchestrator.executors.base import Job, Outcome, OutputSink, StopRequest
from orchestrator.executors.init import prepare_init
from orchestrator.store.layout import git_cache_dir

__all__ = ["MAX_LINE", "LocalExecutor"]

#: Longest line handed to the sink; longer ones are split (1 MiB).
MAX_LINE = 1024 * 1024
_CHUNK = 64 * 1024
#: Seconds the output pipes may stay open after the process group is gone.
_DRAIN_S = 2.0


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(stream: ByteReceiveStream, name: str, log: BinaryIO, sink: OutputSink) -> None:
    """Copy ``stream`` to ``log`` (in a worker thread, chunk by chunk) and to ``sink`` by line."""
    pending = b""
    try:
        while True:
            try:
                chunk = await stream.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                break
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


class LocalExecutor:
    """Runs jobs as subprocesses of this machine."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @staticmethod
    def _make_folders(job: Job) -> tuple[BinaryIO, BinaryIO]:
        """Create the run's folders and open its log files: one worker-thread trip per run."""
        layout = job.layout
        os.makedirs(layout.outputs, exist_ok=True)  # the run folder too (exists on a retry)
        if not os.path.isdir(job.cwd):
            os.makedirs(job.cwd, exist_ok=True)
        return open(layout.stdout, "ab", buffering=0), open(layout.stderr, "ab", buffering=0)

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
            logs = await anyio.to_thread.run_sync(self._make_folders, job)
        except OSError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc}")
        with contextlib.ExitStack() as owned:  # the log files, until the pumps take them
            for log in logs:
                owned.callback(log.close)
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
                process = await anyio.open_process(
                    job.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=job.cwd,
                    env=job.env,
                    start_new_session=True,
                )
            except OSError as exc:
                return Outcome(None, error=_start_error(job.argv, exc))
            owned.pop_all()  # from here on the pumps close the logs
        try:
            async with process:
                return await self._supervise(process, logs, sink, stop, started)
        except BaseException:
            # Cancelled (the engine is going down) or failed: the whole group goes with us.
            _signal_group(process.pid, signal.SIGKILL)
            raise

    async def _supervise(
        self,
        process: Process,
        logs: tuple[BinaryIO, BinaryIO],
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        pid = process.pid
        assert process.stdout is not None and process.stderr is not None
        async with anyio.create_task_group() as pumps:
            async with anyio.create_task_group() as watch:
                watch.start_soon(self._watch_stop, pid, stop)
                # The run is RUNNING before its first line is handled (the pipes hold output
                # meanwhile), so no LogLine ever precedes its run's RunStateChanged(running).
                await started(pid)
                pumps.start_soon(_pump, process.stdout, "stdout", logs[0], sink)
                pumps.start_soon(_pump, process.stderr, "stderr", logs[1], sink)
                code = await process.wait()
                watch.cancel_scope.cancel()
            # Whatever is left of the group (daemonised grandchildren) dies with the run.
            _signal_group(pid, signal.SIGKILL)
            pumps.cancel_scope.deadline = anyio.current_time() + _DRAIN_S
        return Outcome(code, stopped=stop.is_requested)

    @staticmethod
    async def _watch_stop(pid: int, stop: StopRequest) -> None:
        await stop.requested.wait()
        _signal_group(pid, signal.SIGTERM)
        with anyio.move_on_after(stop.grace):
            await stop.kill_now.wait()
        _signal_group(pid, signal.SIGKILL)
