"""The supervisor of a Dask worker's runs, on the worker's machine: one process per worker
process, started by its first run (:mod:`orchestrator.executors.dask_worker`), which starts
every run's command and makes sure no command outlives the worker.

Why a process between the worker and the commands: a worker killed with ``kill -9`` (the OOM
killer, a node going away, ``scancel``) can do nothing for its children, and a command left
running would be an orphan nobody reads, whose run the orchestrator has already failed and may
start again elsewhere. This process holds one end of a Unix socket (its stdin) whose other end
only the worker holds; the kernel closes it however the worker dies, and its end means "the
worker is gone": every command's process group gets SIGTERM, then SIGKILL after its grace, and
this process exits. Why one per worker, not one per run: a Python start costs tens of
milliseconds, most of a short run's overhead on Dask (``benchmarks/bench_dask.py``).

Messages from the worker (one per ``SOCK_SEQPACKET`` packet):

- ``S`` + JSON ``{"key", "argv", "env", "cwd", "grace"}`` with three file descriptors (the
  command's stdout and stderr, and the run's status pipe): start the command in a session of
  its own, in ``cwd``, with ``env``, ``/dev/null`` as stdin, Python's ignored signals at their
  default;
- ``T KEY`` / ``K KEY``: SIGTERM / SIGKILL to that run's whole group (grandchildren
  included: shell wrappers, torchrun);
- ``E KEY``: the run's task is over: a command still running gets SIGTERM, then SIGKILL after
  its grace.

On a run's status pipe this process writes one line per fact: ``P <pid>`` once the command
started, ``E <errno> <message>`` when it could not, ``C <errno> <message>`` when its working
folder could not be entered; then ``X <exit code> <cpu microseconds> <peak RSS KiB>``
(``wait4``'s accounting; a negative code: killed by that signal) once the command exited,
after what was left of its group got SIGKILL (before it was reaped: a recycled pid is never
signalled); then it closes the pipe.

Run as ``python -I -S dask_supervisor.py`` with the socket as stdin: standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["main", "spawn"]

_SIGNALS = {"T": signal.SIGTERM, "K": signal.SIGKILL}
#: Signals Python or this process ignores that a command must find at their default.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM)
#: The largest message the worker sends (a run's command line and environment).
MESSAGE_MAX = 4 << 20


def _signal_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write(fd: int, line: str) -> None:
    try:  # noqa: SIM105
        os.write(fd, line.encode(errors="replace") + b"\n")
    except OSError:
        pass


def _close(*fds: int) -> None:
    for fd in fds:
        try:  # noqa: SIM105
            os.close(fd)
        except OSError:
            pass


def spawn(argv: list[str], env: dict[str, str], stdout: int, stderr: int) -> int:
    """Start ``argv`` in a new session, looked for on ``env``'s ``PATH`` as ``subprocess``
    does (the first error other than "not there" is the one raised)."""
    program = argv[0]
    paths = [program] if os.path.dirname(program) else []
    paths = paths or [os.path.join(folder, program) for folder in os.get_exec_path(env)]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    first: OSError | None = None
    for path in paths:
        try:
            return os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS
            )
        except OSError as exc:
            if first is None or (
                first.errno in (errno.ENOENT, errno.ENOTDIR)
                and exc.errno not in (errno.ENOENT, errno.ENOTDIR)
            ):
                first = exc
    raise first or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _why(exc: BaseException) -> tuple[int, str]:
    number = getattr(exc, "errno", None) or errno.EINVAL
    return number, " ".join((getattr(exc, "strerror", None) or str(exc)).split())


@dataclass
class _Run:
    key: str
    pid: int
    exited: int  # its pidfd
    status: int
    grace: float
    kill_at: float | None = None


class _Supervisor:
    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.poll = select.poll()
        self.poll.register(channel.fileno(), select.POLLIN)
        self.runs: dict[str, _Run] = {}
        self.by_pidfd: dict[int, _Run] = {}
        self.worker_gone = False

    def serve(self) -> int:
        while self.runs or not self.worker_gone:
            due = [r.kill_at for r in self.runs.values() if r.kill_at is not None]
            wait = None if not due else max(0, round((min(due) - time.monotonic()) * 1000))
            for fd, _ in self.poll.poll(wait):
                if fd == self.channel.fileno():
                    self._message()
                elif fd in self.by_pidfd:
                    self._reap(self.by_pidfd[fd])
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.kill_at is not None and now >= run.kill_at:
                    _signal_group(run.pid, signal.SIGKILL)
                    run.kill_at = None
        return 0

    def _message(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.channel, MESSAGE_MAX, 3)
        except OSError:
            data, fds = b"", []
        for fd in fds:
            os.set_inheritable(fd, False)  # no other command may hold them
        if not data:  # the worker is gone
            _close(*fds)
            self.poll.unregister(self.channel.fileno())
            self.worker_gone = True
            for run in self.runs.values():
                self._terminate(run)
            return
        word = data[:1].decode(errors="replace")
        if word == "S":
            self._start(json.loads(data[1:]), fds)
            return
        _close(*fds)
        named = self.runs.get(data[2:].decode(errors="replace"))
        if named is None:
            return
        if word == "E":
            self._terminate(named)
        elif word in _SIGNALS:
            _signal_group(named.pid, _SIGNALS[word])

    def _terminate(self, run: _Run) -> None:
        if run.kill_at is None:
            _signal_group(run.pid, signal.SIGTERM)
            run.kill_at = time.monotonic() + run.grace

    def _start(self, spec: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 3:
            _close(*fds)
            return
        stdout, stderr, status = fds
        try:
            os.chdir(str(spec["cwd"]))
        except OSError as exc:
            _write(status, "C {} {}".format(*_why(exc)))
            _close(*fds)
            return
        try:
            argv = [str(arg) for arg in spec["argv"]]
            env = {str(k): str(v) for k, v in spec["env"].items()}
            pid = spawn(argv, env, stdout, stderr)
        except (OSError, ValueError, IndexError, TypeError) as exc:
            _write(status, "E {} {}".format(*_why(exc)))
            _close(*fds)
            return
        finally:
            os.chdir("/")
        _close(stdout, stderr)
        _write(status, f"P {pid}")
        run = _Run(str(spec["key"]), pid, os.pidfd_open(pid), status, float(spec["grace"]))
        self.runs[run.key] = run
        self.by_pidfd[run.exited] = run
        self.poll.register(run.exited, select.POLLIN)

    def _reap(self, run: _Run) -> None:
        os.waitid(os.P_PID, run.pid, os.WEXITED | os.WNOWAIT)
        _signal_group(run.pid, signal.SIGKILL)  # daemonised leftovers die with their run
        _, status_word, usage = os.wait4(run.pid, 0)
        code = os.waitstatus_to_exitcode(status_word)
        cpu_us = round((usage.ru_utime + usage.ru_stime) * 1e6)
        _write(run.status, f"X {code} {cpu_us} {usage.ru_maxrss}")
        self.poll.unregister(run.exited)
        _close(run.status, run.exited)
        del self.by_pidfd[run.exited]
        del self.runs[run.key]


def main() -> int:
    channel = socket.socket(fileno=0)
    os.set_inheritable(0, False)
    for ignored in (signal.SIGINT, signal.SIGTERM):  # the worker's end is what ends this
        signal.signal(ignored, signal.SIG_IGN)
    return _Supervisor(channel).serve()


if __name__ == "__main__":
    sys.exit(main())
