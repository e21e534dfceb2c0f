"""Runs started, reaped and, after a crash, killed by the run supervisor, seen from the
orchestrator.

The supervisor (:mod:`orchestrator.executors.supervisor`, which says why it exists) is started
on first use, once per orchestrator process, in a session of its own (Ctrl-C on the terminal
reaches the orchestrator, which stops the runs gracefully, not the supervisor); it is replaced
if it ever dies, and a forked child of this process forgets it (so the child cannot keep it
from noticing our death). Each run gets a channel of its own: a socket pair, one end handed to
the supervisor with the run's stdout and stderr pipes and this process's exit-status file; the
request, signals, the pid and the exit code travel over it, so runs share no state here and
any event loop may drive them.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import anyio

from orchestrator.executors import supervisor
from orchestrator.procinfo import signal_group

__all__ = ["FolderError", "SupervisedProcess", "SupervisorLost"]

_SCRIPT = str(Path(supervisor.__file__).resolve())
_COMMANDS = {signal.SIGTERM: b"T", signal.SIGKILL: b"K"}


class SupervisorLost(ConnectionError):
    """The supervisor process went away (killed from outside) while it held a run."""


class FolderError(OSError):
    """The supervisor could not make a folder the run needs (``strerror``: why, and which)."""


class _Handle:
    """The control socket to this process's supervisor, (re)started on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._pid: int | None = None

    def hand_over(self, fds: list[int]) -> None:
        """Give the supervisor a new run's descriptors (a short, atomic, blocking send)."""
        message = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        with self._lock:
            for _ in range(2):
                control = self._control or self._start()
                try:
                    control.sendmsg([b"R"], message)
                    return
                except (BrokenPipeError, ConnectionResetError):
                    self._discard()  # it died: the next turn starts a fresh one
        raise SupervisorLost("the run supervisor exits as soon as it starts")

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.set_inheritable(theirs.fileno(), True)
            argv = [sys.executable, "-I", "-S", _SCRIPT, str(theirs.fileno())]
            self._pid = os.posix_spawn(
                sys.executable,
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours
        return ours

    def _discard(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, os.WNOHANG)
            self._pid = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's supervisor without touching it."""
        self._lock = threading.Lock()
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
        self._control, self._pid = None, None


_SUPERVISOR = _Handle()
os.register_at_fork(after_in_child=_SUPERVISOR.forget_after_fork)


class SupervisedProcess:
    """One run, as a child of the supervisor: start it, signal its group, wait for its end."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._buffer = b""
        self.pid = 0
        self.exit_code: int | None = None

    @classmethod
    async def start(
        cls,
        run_id: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        folders: list[str],
        output: tuple[int, int],
        status: int,
    ) -> SupervisedProcess:
        """Start ``argv`` (run ``run_id``) in ``cwd``, in a new session, once ``folders`` exist
        (the supervisor makes them: :class:`FolderError` if it cannot), its stdout and stderr
        to the ``output`` pipe ends (the caller closes its copies), its exit status appended
        to the locked ``status`` file (see :mod:`.exit_status`; the supervisor gets a copy);
        raises the ``OSError`` that starting it raised."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _SUPERVISOR.hand_over([theirs.fileno(), *output, status])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        process = cls(ours)
        try:
            request = {"run": run_id, "argv": argv, "env": env, "cwd": cwd, "folders": folders}
            body = json.dumps(request)
            await process._send(supervisor.HEADER.pack(len(body)) + body.encode())
            kind, _, rest = (await process._message()).partition(" ")
            if kind in ("E", "F"):
                number, _, text = rest.partition(" ")
                raise (FolderError if kind == "F" else OSError)(int(number), text)
            process.pid = int(rest)
        except BaseException:
            ours.close()
            raise
        return process

    def signal(self, sig: signal.Signals) -> None:
        """SIGTERM or SIGKILL to the run's group, unless it has already been reaped."""
        if self.exit_code is None:
            with contextlib.suppress(OSError):
                self._channel.send(_COMMANDS[sig])

    async def wait(self) -> int:
        """The exit code (negative: killed by that signal), once the status is on disk."""
        if self.exit_code is None:
            try:
                kind, _, rest = (await self._message()).partition(" ")
            except SupervisorLost:
                # Nobody will reap or stop the run now (init adopted it): it goes, group and all.
                signal_group(self.pid, signal.SIGKILL)
                raise
            if kind != "X":
                raise SupervisorLost(f"unexpected word from the run supervisor: {kind!r}")
            self.exit_code = int(rest)
        return self.exit_code

    def close(self) -> None:
        """Let go of the run; one still alive gets SIGKILL (its group with it)."""
        self.signal(signal.SIGKILL)
        self._channel.close()

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._channel.send(view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._channel)

    async def _message(self) -> str:
        while b"\n" not in self._buffer:
            try:
                chunk = self._channel.recv(4096)
            except BlockingIOError:
                await anyio.wait_readable(self._channel)
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise SupervisorLost("the run supervisor went away while it held this run")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()
