"""Runs started, reaped and, after a crash, killed by the run supervisor, seen from the
orchestrator.

The supervisor (:mod:`orchestrator.executors.supervisor`, which says why it exists) is started
on first use, once per orchestrator process, in a session of its own (Ctrl-C on the terminal
reaches the orchestrator, which stops the runs gracefully, not the supervisor); it is replaced
if it ever dies, and a forked child of this process forgets it (so the child cannot keep it
from noticing our death). All runs share one control socket to it: a run is a number in each
message, its request goes out in one ``sendmsg`` with this process's exit-status file (its
environment as what differs from a base the supervisor was sent once), and one reader on
the event loop (``add_reader``: asyncio, the only backend the orchestrator runs on) hands
each answer to its run: the pid, start time and output pipes (made by the supervisor: their
system calls are not ours), then the exit code. A run costs no socket, task or poll
registration of its own.

The reader belongs to one event loop at a time: a later loop (another ``anyio.run`` in the
same process) takes it over once the earlier one is over; a loop running at the same time as
another (threads) gets a supervisor of its own.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.executors import supervisor
from orchestrator.procinfo import signal_group

__all__ = ["FolderError", "SupervisedProcess", "SupervisorLost", "warm_up"]

_SCRIPT = str(Path(supervisor.__file__).resolve())
_COMMANDS = {signal.SIGTERM: b"T", signal.SIGKILL: b"K"}
#: Room for the two pipes that come with a ``P`` answer.
_PIPES_SPACE = socket.CMSG_SPACE(2 * array.array("i").itemsize)
#: Most names a run's environment may differ in from the supervisor's base before the run's
#: whole environment is sent as the new base.
_MOST_DIFFERENCES = 16
#: Received descriptors close on exec (Linux); nothing waits on the control socket.
_RECEIVE_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_CMSG_CLOEXEC", 0)


class SupervisorLost(ConnectionError):
    """The supervisor process went away (killed from outside) while it held a run."""


class FolderError(OSError):
    """The supervisor could not make a folder the run needs (``strerror``: why, and which)."""


class _Handle:
    """One supervisor and the control socket to it, read on one event loop; (re)started on
    demand."""

    def __init__(self) -> None:
        self._control: socket.socket | None = None
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The runs it holds, by number: started or starting, not yet ended or let go.
        self._runs: dict[int, SupervisedProcess] = {}
        self._numbers = itertools.count(1)
        #: The environment the supervisor holds as its base (None: none yet).
        self._base: dict[str, str] | None = None

    def idle(self) -> bool:
        """No running event loop reads it (none yet, or its loop is over)."""
        old = self._loop
        return old is None or old.is_closed() or not old.is_running()

    def claim(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read it on ``loop`` from now on (the caller holds the handles' lock). Runs left by
        an earlier loop that is over are let go: nobody waits for them."""
        old, self._loop = self._loop, loop
        if self._control is not None:
            if old is not None and not old.is_closed():
                old.remove_reader(self._control.fileno())
            for number in list(self._runs):
                self.say(b"D", number)
            loop.add_reader(self._control.fileno(), self._on_readable)
        self._runs.clear()

    def hand_over(
        self,
        process: SupervisedProcess,
        request: dict[str, Any],
        env: Mapping[str, str],
        fds: list[int],
    ) -> None:
        """Send a new run's request (``env`` as what differs from the supervisor's base,
        see :meth:`_environment`) and descriptors (short, atomic, blocking sends: the
        supervisor never blocks on us); its answers come on this handle's loop."""
        for _ in range(2):
            control = self._control if self._control is not None else self._start()
            number = next(self._numbers)
            base = self._environment(env, request)
            try:
                self._send(control, number, json.dumps(request).encode(), fds)
            except (BrokenPipeError, ConnectionResetError):
                self._lost()  # it died: the next turn starts a fresh one
                continue
            self._base = base  # the supervisor has it now
            process.number = number
            self._runs[number] = process
            return
        raise SupervisorLost("the run supervisor exits as soon as it starts")

    def _environment(self, env: Mapping[str, str], request: dict[str, Any]) -> dict[str, str]:
        """Say in ``request`` what the run's environment is: the names whose value differs
        from the base the supervisor holds (``env``) and those to take out of it (``unset``);
        or, when they would be many (the first run, another sweep's environment), ``env``
        itself as the new ``base``. Returns the base the supervisor holds once it has the
        request. Runs of one sweep differ in a few names (their ids and folders, their GPUs):
        sent whole, ~40 names would be encoded and decoded for every run."""
        base = self._base
        if base is not None:
            extra = {k: v for k, v in env.items() if base.get(k) != v}
            if len(extra) <= _MOST_DIFFERENCES:
                kept = len(env) - sum(1 for k in extra if k not in base)  # base names it has
                if len(base) - kept <= _MOST_DIFFERENCES:
                    unset = [k for k in base if k not in env] if kept < len(base) else []
                    request.update(env=extra, base=None, unset=unset)
                    return base
        fresh = dict(env)
        request.update(env={}, base=fresh, unset=[])
        return fresh

    @staticmethod
    def _send(control: socket.socket, number: int, request: bytes, fds: list[int]) -> None:
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        first = request[: supervisor.MAX_PART]
        control.sendmsg([supervisor.START.pack(b"R", number, len(request)), first], rights)
        word = supervisor.WORD.pack(b"C", number)
        for at in range(len(first), len(request), supervisor.MAX_PART):
            control.sendmsg([word, request[at : at + supervisor.MAX_PART]])

    def say(self, word: bytes, number: int) -> None:
        """``T``, ``K`` or ``D`` about run ``number`` (nothing if the supervisor is gone)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(supervisor.WORD.pack(word, number))

    def let_go(self, number: int) -> None:
        self._runs.pop(number, None)

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
        self._base = None  # a new supervisor holds no base environment yet
        if self._loop is not None:
            self._loop.add_reader(ours.fileno(), self._on_readable)
        return ours

    def _on_readable(self) -> None:
        """Every answer waiting on the control socket, each to its run."""
        control = self._control
        while control is not None:
            try:
                data, fds = supervisor.receive(control, 4096, _PIPES_SPACE, _RECEIVE_FLAGS)
            except BlockingIOError:
                return
            if not data:
                supervisor.close_all(fds)
                self._lost()
                return
            word, number, rest = data.decode(errors="replace").split(" ", 2)
            process = self._runs.get(int(number))
            if process is None:  # let go of: nobody reads its pipes
                supervisor.close_all(fds)
            else:
                process.answered(word, rest, fds)

    def _lost(self) -> None:
        """The supervisor is gone: every run it held hears so; the next run starts anew."""
        runs, self._runs = self._runs, {}
        if self._control is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._control.fileno())
            self._control.close()
            self._control = None
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, os.WNOHANG)
            self._pid = None
        for process in runs.values():
            process.lost()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's supervisor without touching it (nor its
        loop's selector, which the child does not use)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
        self._control, self._pid, self._loop = None, None, None
        self._runs = {}


class _Handles:
    """This process's supervisors: the first for every loop in turn, another only for a loop
    that runs while an earlier one still holds runs (threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.handles = [_Handle()]

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> _Handle:
        with self._lock:
            for handle in self.handles:
                if handle._loop is loop:
                    return handle
            fresh = next((h for h in self.handles if h.idle()), None)
            if fresh is None:
                fresh = _Handle()
                self.handles.append(fresh)
            fresh.claim(loop)
            return fresh

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        for handle in self.handles:
            handle.forget_after_fork()
        del self.handles[1:]


_HANDLES = _Handles()
#: The first (usually only) supervisor.
_SUPERVISOR = _HANDLES.handles[0]
os.register_at_fork(after_in_child=_HANDLES.forget_after_fork)


def warm_up() -> None:
    """Start this process's supervisor now, if none runs: a sweep about to run locally calls
    it first, so that the supervisor's ~30 ms of interpreter start-up overlap the sweep's own
    (imports, the journal, the plan) instead of delaying its first run. The event loop that
    runs the sweep reads it from then on."""
    with _HANDLES._lock:
        if _SUPERVISOR._control is None:
            _SUPERVISOR._start()


class SupervisedProcess:
    """One run, as a child of the supervisor: start it, signal its group, wait for its end.

    The supervisor's answers arrive through the control socket's reader: :attr:`exited`
    is a future of the exit code (or :class:`SupervisorLost`), for a caller that waits for
    it alongside other things."""

    def __init__(self, handle: _Handle, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = handle
        self.number = 0
        self.pid = 0
        #: Its start time as its parent read it (``procinfo.start_time``); None: unknown.
        self.start_time: int | None = None
        #: The read ends of its stdout and stderr pipes (non-blocking), closed by :meth:`close`.
        self.pipes: tuple[int, int] = (-1, -1)
        self.exit_code: int | None = None
        self._started: asyncio.Future[int] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        #: The kernel's accounting once it exited: (CPU seconds, user and system, peak RSS
        #: bytes), its own and its waited-for children's; None before, or unknown.
        self.usage: tuple[float, int] | None = None

    @classmethod
    async def start(
        cls,
        run_id: str,
        argv: list[str],
        env: Mapping[str, str],
        cwd: str,
        folders: list[str],
        status: int,
    ) -> SupervisedProcess:
        """Start ``argv`` (run ``run_id``) in ``cwd``, in a new session, once ``folders`` exist
        (the supervisor makes them: :class:`FolderError` if it cannot), its stdout and stderr
        to pipes read at :attr:`pipes`, its exit status appended to the locked ``status``
        file (see :mod:`.exit_status`; the supervisor gets a copy); raises the ``OSError``
        that starting it raised."""
        loop = asyncio.get_running_loop()
        handle = _HANDLES.for_loop(loop)
        process = cls(handle, loop)
        request: dict[str, Any] = {"run": run_id, "argv": argv, "cwd": cwd, "folders": folders}
        handle.hand_over(process, request, env, [status])
        try:
            process.pid = await process._started
        except BaseException as exc:
            if not isinstance(exc, OSError):  # cancelled: a run it starts is killed at once
                handle.say(b"D", process.number)
            handle.let_go(process.number)
            supervisor.close_all(process.pipes)  # its answer may have come meanwhile
            raise
        return process

    def answered(self, kind: str, rest: str, fds: list[int]) -> None:
        """An answer about this run from the supervisor (the control socket's reader), with
        the descriptors that came with it."""
        if kind == "P" and len(fds) == 2 and not self._started.done():
            pid, _, started = rest.partition(" ")
            self.pipes, self.start_time = (fds[0], fds[1]), int(started or 0) or None
            self._started.set_result(int(pid))
            return
        supervisor.close_all(fds)
        if kind == "P":
            if not self._started.done():
                self._started.set_exception(SupervisorLost(f"no output pipes with {rest!r}"))
        elif kind in ("E", "F"):
            number, _, text = rest.partition(" ")
            error = (FolderError if kind == "F" else OSError)(int(number), text)
            if not self._started.done():
                self._started.set_exception(error)
        elif kind == "X":
            code, *usage = rest.split()
            self.exit_code = int(code)
            if len(usage) == 2:  # CPU microseconds, peak RSS KiB (wait4's accounting)
                self.usage = (int(usage[0]) / 1e6, int(usage[1]) * 1024)
            self._handle.let_go(self.number)
            if not self.exited.done():
                self.exited.set_result(self.exit_code)

    def lost(self) -> None:
        """The supervisor went away while it held this run."""
        for future in (self._started, self.exited):
            if not future.done():
                future.set_exception(
                    SupervisorLost("the run supervisor went away while it held this run")
                )
                future.exception()  # its waiter, if any, hears it: no "never retrieved" log

    def signal(self, sig: signal.Signals) -> None:
        """SIGTERM or SIGKILL to the run's group, unless it has already been reaped."""
        if self.exit_code is None:
            self._handle.say(_COMMANDS[sig], self.number)

    async def wait(self) -> int:
        """The exit code (negative: killed by that signal), once the status is on disk."""
        await asyncio.wait([self.exited])
        return self.result_of(self.exited)

    def result_of(self, exited: asyncio.Future[int]) -> int:
        """The exit code of the done future :attr:`exited`; raises :class:`SupervisorLost`,
        the run then killed with its group (init adopted it: nobody else will)."""
        try:
            return exited.result()
        except SupervisorLost:
            signal_group(self.pid, signal.SIGKILL)
            raise

    def close(self) -> None:
        """Let go of the run; one still alive gets SIGKILL (its group with it) and counts as
        orphaned."""
        if self.exit_code is None:
            self._handle.say(b"D", self.number)
        self._handle.let_go(self.number)
        self.exited.cancel()  # nobody waits for it any more
        supervisor.close_all(self.pipes)
        self.pipes = (-1, -1)
