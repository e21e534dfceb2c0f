"""The run supervisor: the one process that starts, reaps and, if need be, kills the runs of one
orchestrator process, and writes down how each of them ended.

Why a separate process: a run must not outlive its orchestrator, even one killed with
``kill -9``, and how a run ended must not die with the orchestrator either. Only a process's
parent learns its exit status, and a process cannot act after its own ``kill -9``; so the
runs' parent is this small program (standard library only, started once per orchestrator
process with ``python -I -S``: ~40 ms, no process per run), and it watches a socket that only
the orchestrator holds the other end of. The kernel closes that socket however the
orchestrator dies, and the supervisor reads EOF.

The conversation (see :mod:`orchestrator.executors.supervised` for the other side):

- The **control socket** (``SOCK_SEQPACKET``, fd ``argv[1]``) carries one message per run: the
  byte ``R`` and four descriptors (``SCM_RIGHTS``): the run's own **channel** (a stream
  socket), the write ends of its stdout and stderr pipes, and the orchestrator's exit-status
  file, which it holds open and locked (``flock``) while it lives
  (:mod:`orchestrator.executors.exit_status`).
- On the channel, the orchestrator sends the request (a 4-byte length, then JSON: ``run``,
  ``argv``, ``env``, ``cwd``, ``folders``); later ``T`` (SIGTERM the run's group) or ``K``
  (SIGKILL it). The supervisor makes the ``folders`` (if missing: the run folder and its
  working folder; their kernel time is spent here, not in the orchestrator), starts the run,
  and answers ``P <pid>``, or ``F <errno> <message>`` if it could not make a folder, or
  ``E <errno> <message>`` if it could not start it; finally ``X <exit code>`` (negative:
  killed by that signal).

For each run, in this order: the run starts in a new session (its own process group, so
signals reach its grandchildren); when it exits its status is appended to the status file
(``{"run": ID, "exit_code": 0, "orphaned": false}``) and this copy of it closed, what is left
of its group gets SIGKILL, and only then is it reaped and ``X`` sent. So once no copy of the
status file is open (the orchestrator gone, every run written down) it is unlocked and holds
the final word, and a signal from here never reaches a recycled pid.

When the orchestrator is gone (the control socket, or a run's channel, reads EOF), each of its
runs gets SIGTERM, then SIGKILL :data:`ORPHAN_GRACE_S` later; their statuses say
``"orphaned": true``. When no run is left, the supervisor exits. Status files are not fsynced:
they survive any process's crash, like the journal's last transactions; a power cut may lose
both (the run then counts as lost and runs again).
"""

from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["HEADER", "ORPHAN_GRACE_S", "STATUS_FILE", "main", "status_record"]

#: A run folder's own exit-status file, in homes made before the shared status files.
STATUS_FILE = "exit_status.json"
#: Seconds an orphaned run gets between SIGTERM and SIGKILL.
ORPHAN_GRACE_S = 0.5
#: Seconds an orphan is waited for after its SIGKILL (a process in uninterruptible sleep may
#: take long to die); then the supervisor exits anyway and that status stays unwritten.
_GIVE_UP_S = 5.0
#: The length prefix of a request.
HEADER = struct.Struct("!I")
_FDS_PER_RUN = 4
_SIGNALS = {ord("T"): signal.SIGTERM, ord("K"): signal.SIGKILL}
#: Received descriptors close on exec (Linux); runs get none of them anyway (``close_fds``).
_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def status_record(run_id: str, exit_code: int, orphaned: bool) -> bytes:
    """The line recording how a run ended (``exit_status.read_exit_statuses`` finds it)."""
    record = {"run": run_id, "exit_code": exit_code, "orphaned": orphaned}
    return json.dumps(record).encode() + b"\n"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Run:
    """One run, from its request to its reaping."""

    def __init__(self, channel: socket.socket, stdio: list[int], status_fd: int) -> None:
        self.channel: socket.socket | None = channel
        self.stdio = stdio
        self.request = b""
        self.run_id = ""
        self.pid: int | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        #: A copy of the locked status file: closed once the status is appended (or never).
        self.status_fd: int | None = status_fd
        self.orphaned = False
        #: When an orphan gets SIGKILL, then when it is given up on.
        self.kill_at: float | None = None
        self.give_up_at: float | None = None

    def answer(self, message: bytes) -> None:
        if self.channel is not None:
            with contextlib.suppress(OSError):
                self.channel.send(message)

    def close_stdio(self) -> None:
        for fd in self.stdio:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdio = []

    def close_status(self, record: bytes = b"") -> None:
        if self.status_fd is not None:
            with contextlib.suppress(OSError):  # a full disk: no status, the run counts lost
                if record:
                    os.write(self.status_fd, record)  # O_APPEND: one line, never mixed
            os.close(self.status_fd)  # the lock goes with the last copy
            self.status_fd = None


class Supervisor:
    def __init__(self, control: socket.socket, grace: float = ORPHAN_GRACE_S) -> None:
        self.control: socket.socket | None = control
        self.grace = grace
        self.selector = selectors.DefaultSelector()
        #: Runs whose request is still arriving.
        self.pending: set[_Run] = set()
        #: Started and not yet reaped, by pid.
        self.alive: dict[int, _Run] = {}
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(control, selectors.EVENT_READ, self._on_control)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._on_wake)

    # ------------------------------------------------------------------ the loop
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # reset to default on exec
        while self.control is not None or self.alive:
            if self.control is None and self._given_up():
                return
            for key, _ in self.selector.select(self._timeout()):
                callback: Callable[[], None] = key.data
                callback()
            self._reap()
            self._kill_due()

    def _timeout(self) -> float | None:
        due = [t for run in self.alive.values() for t in (run.kill_at, run.give_up_at) if t]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass

    def _given_up(self) -> bool:
        now = time.monotonic()
        return all(0 < (run.give_up_at or 0) <= now for run in self.alive.values())

    # ------------------------------------------------------------------ requests
    def _on_control(self) -> None:
        assert self.control is not None
        try:
            data, ancillary, _, _ = self.control.recvmsg(
                16, socket.CMSG_SPACE(_FDS_PER_RUN * 4), _CMSG_CLOEXEC
            )
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            self._orchestrator_gone()
            return
        if len(fds) != _FDS_PER_RUN:
            for fd in fds:
                os.close(fd)
            return
        channel = socket.socket(fileno=fds[0])
        channel.setblocking(False)
        run = _Run(channel, [fds[1], fds[2]], fds[3])
        self.pending.add(run)
        self.selector.register(channel, selectors.EVENT_READ, lambda: self._on_channel(run))

    def _on_channel(self, run: _Run) -> None:
        if run.channel is None:  # closed earlier in this round
            return
        try:
            data = run.channel.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._channel_closed(run)
            return
        if run.pid is None:
            run.request += data
            if len(run.request) < HEADER.size:
                return
            (size,) = HEADER.unpack_from(run.request)
            if len(run.request) < HEADER.size + size:
                return
            end = HEADER.size + size
            body, data, run.request = run.request[HEADER.size : end], run.request[end:], b""
            self.pending.discard(run)
            try:
                request = json.loads(body)
            except ValueError:
                request = {}
            self._start(run, request)
        if run.pid is not None:
            for command in data:
                if command in _SIGNALS:
                    _signal_group(run.pid, _SIGNALS[command])

    def _start(self, run: _Run, request: dict[str, Any]) -> None:
        try:
            for folder in request.get("folders", []):
                os.makedirs(folder, exist_ok=True)
        except (OSError, TypeError) as exc:
            code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
            run.answer(f"F {code} {' '.join(str(exc).split())}\n".encode())
            run.close_stdio()
            self._forget(run)
            return
        try:
            run.run_id = str(request["run"])
            run.popen = subprocess.Popen(
                request["argv"],
                stdin=self.devnull,
                stdout=run.stdio[0],
                stderr=run.stdio[1],
                cwd=request["cwd"],
                env=request["env"],
                start_new_session=True,
            )
        except (OSError, ValueError, TypeError, KeyError) as exc:
            code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
            text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            run.answer(f"E {code} {' '.join(text.split())}\n".encode())
            self._forget(run)  # its status stays empty: it never ran
            return
        finally:
            run.close_stdio()  # the run holds them now: EOF comes when it (and its group) exits
        run.pid = run.popen.pid
        self.alive[run.pid] = run
        run.answer(b"P %d\n" % run.pid)
        if self.control is None:  # the orchestrator went while this request was arriving
            self._orphan(run)

    # ------------------------------------------------------------------ endings
    def _reap(self) -> None:
        """Every exited child: status written and unlocked, group killed, reaped, announced."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or not info.si_pid:
                return
            pid = info.si_pid
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            run = self.alive.pop(pid, None)
            if run is not None:
                run.close_status(status_record(run.run_id, code, run.orphaned))
            _signal_group(pid, signal.SIGKILL)  # daemonised leftovers die with their run
            os.waitpid(pid, 0)
            if run is not None:
                if run.popen is not None:
                    run.popen.returncode = code
                run.answer(b"X %d\n" % code)
                self._forget(run)

    def _channel_closed(self, run: _Run) -> None:
        if run.pid is None:
            self.pending.discard(run)
            self._forget(run)
        else:
            self._orphan(run)
            self._close_channel(run)

    def _orchestrator_gone(self) -> None:
        if self.control is not None:
            self.selector.unregister(self.control)
            self.control.close()
            self.control = None
        for run in list(self.pending):
            self._forget(run)
        self.pending.clear()
        for run in list(self.alive.values()):
            self._orphan(run)

    def _orphan(self, run: _Run) -> None:
        if run.orphaned or run.pid is None:
            return
        run.orphaned = True
        _signal_group(run.pid, signal.SIGTERM)
        run.kill_at = time.monotonic() + self.grace

    def _kill_due(self) -> None:
        now = time.monotonic()
        for run in self.alive.values():
            if run.kill_at is not None and run.kill_at <= now and run.pid is not None:
                _signal_group(run.pid, signal.SIGKILL)
                run.kill_at, run.give_up_at = None, now + _GIVE_UP_S

    def _close_channel(self, run: _Run) -> None:
        if run.channel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(run.channel)
            run.channel.close()
            run.channel = None

    def _forget(self, run: _Run) -> None:
        run.close_stdio()
        run.close_status()
        self._close_channel(run)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    control.set_inheritable(False)
    grace = float(args[1]) if len(args) > 1 else ORPHAN_GRACE_S
    os.chdir("/")  # hold no folder busy; every run names its own working folder
    Supervisor(control, grace).serve()


if __name__ == "__main__":
    main()
