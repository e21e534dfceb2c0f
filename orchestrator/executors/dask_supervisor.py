"""The supervisor of one Dask run, on the worker's machine: started by the worker's task
(:mod:`orchestrator.executors.dask_worker`), it starts the run's command and makes sure the
command never outlives the worker.

Why a process between the worker and the command: a worker killed with ``kill -9`` (the OOM
killer, a node going away, ``scancel``) can do nothing for its children, and a command left
running would be an orphan nobody reads, whose run the orchestrator has already failed and may
start again elsewhere. This process holds the read end of a pipe (its stdin) whose only
writer is the worker; the kernel closes it however the worker dies, and EOF here means "the
worker is gone": the command's process group gets SIGTERM, then SIGKILL after the grace.
While the worker lives, one byte on that pipe asks for a signal: ``T`` SIGTERM, ``K``
SIGKILL, to the command's whole group (grandchildren included: shell wrappers, torchrun).

Run as ``python -I -S dask_supervisor.py GRACE STATUS_FD ARGV...``, once per run, so it
starts fast: built-in modules only (``_signal``'s numbers, not ``signal``'s enums: a third of
the start-up), no thread (one ``poll`` on the pipe and a pidfd of the command), the command
spawned with ``posix_spawn`` (no fork of this process). The command starts in a session of
its own, with this process's stdout and stderr (the worker's pipes) and ``/dev/null`` as
stdin. On ``STATUS_FD`` this process writes one line per fact: ``P <pid>`` once the command
started, or ``E <errno> <message>`` when it could not; then ``X <exit code> <cpu
microseconds> <peak RSS KiB>`` (``wait4``'s accounting; a negative code: killed by that
signal) once the command exited, after what was left of its group got SIGKILL (before it was
reaped: a recycled pid is never signalled).
"""

from __future__ import annotations

import errno
import os
import select
import sys
import time
from _signal import SIGKILL, SIGPIPE, SIGTERM, SIGXFSZ  # type: ignore[import-not-found]

__all__ = ["main"]

_WORDS = {ord("T"): SIGTERM, ord("K"): SIGKILL}
#: Signals Python ignores that the command must find at their default.
_DEFAULT_SIGNALS = (SIGPIPE, SIGXFSZ)


# try/except, not contextlib.suppress: one import less at every run's start.
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


def spawn(argv: list[str]) -> int:
    """Start ``argv`` in a new session, looked for on ``PATH`` as ``subprocess`` does (the
    first error other than "not there" is the one raised)."""
    program = argv[0]
    paths = [program] if os.path.dirname(program) else []
    paths = paths or [os.path.join(folder, program) for folder in os.get_exec_path()]
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    first: OSError | None = None
    for path in paths:
        try:
            return os.posix_spawn(
                path, argv, os.environ, file_actions=actions, setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
            )  # fmt: skip
        except OSError as exc:
            if first is None or (
                first.errno in (errno.ENOENT, errno.ENOTDIR)
                and exc.errno not in (errno.ENOENT, errno.ENOTDIR)
            ):
                first = exc
    raise first or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _follow(pid: int, grace: float) -> None:
    """Until the command exits: act on the worker's words; at the pipe's end (the worker is
    gone) SIGTERM the command's group, then SIGKILL after the grace."""
    exited = os.pidfd_open(pid)
    poll = select.poll()
    poll.register(exited, select.POLLIN)
    poll.register(0, select.POLLIN)
    kill_at: float | None = None
    while True:
        wait = None if kill_at is None else max(0, round((kill_at - time.monotonic()) * 1000))
        ready = {fd for fd, _ in poll.poll(wait)}
        if exited in ready:
            return
        if 0 in ready:
            try:
                words = os.read(0, 64)
            except OSError:
                words = b""
            for word in words:
                if word in _WORDS:
                    _signal_group(pid, _WORDS[word])
            if not words:  # the worker is gone
                poll.unregister(0)
                _signal_group(pid, SIGTERM)
                kill_at = time.monotonic() + grace
        if kill_at is not None and time.monotonic() >= kill_at:
            _signal_group(pid, SIGKILL)
            kill_at = None


def main(args: list[str]) -> int:
    grace, status, argv = float(args[0]), int(args[1]), args[2:]
    os.set_inheritable(status, False)
    try:
        pid = spawn(argv)
    except (OSError, ValueError, IndexError) as exc:
        number = getattr(exc, "errno", None) or errno.EINVAL
        text = " ".join((getattr(exc, "strerror", None) or str(exc)).split())
        _write(status, f"E {number} {text}")
        return 127
    _write(status, f"P {pid}")
    _follow(pid, grace)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    _signal_group(pid, SIGKILL)  # daemonised leftovers die with their run
    _, status_word, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status_word)
    cpu_us = round((usage.ru_utime + usage.ru_stime) * 1e6)
    _write(status, f"X {code} {cpu_us} {usage.ru_maxrss}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
