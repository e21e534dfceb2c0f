"""The run supervisor: the one process that starts, reaps and, if need be, kills the runs of one
orchestrator process, and writes down how each of them ended.

Why a separate process: a run must not outlive its orchestrator, even one killed with
``kill -9``, and how a run ended must not die with the orchestrator either. Only a process's
parent learns its exit status, and a process cannot act after its own ``kill -9``; so the
runs' parent is this small program (standard library only, started once per orchestrator
process with ``python -I -S``: ~40 ms, no process per run), and it watches a socket that only
the orchestrator holds the other end of. The kernel closes that socket however the
orchestrator dies, and the supervisor reads EOF.

The conversation (see :mod:`orchestrator.executors.supervised` for the other side) is one
**control socket** (``SOCK_SEQPACKET``, fd ``argv[1]``) for all the orchestrator's runs, each
named by a number the orchestrator chooses; one message is one word:

- ``R`` with the run's number and its request's size (:data:`START`), the request's first
  part (JSON: ``run``, ``argv``, ``env``, ``cwd``, ``folders``; ``env`` holds only what
  differs from a base environment that a request sends as ``base`` once, for this and every
  later request, with ``unset`` naming what the run must not have of it) and one descriptor
  (``SCM_RIGHTS``): the orchestrator's exit-status file, which it holds open and locked
  (``flock``) while it lives (:mod:`orchestrator.executors.exit_status`); a long request's
  other parts follow as ``C`` (:data:`WORD`, then the part).
- ``T`` or ``K`` (:data:`WORD`): SIGTERM or SIGKILL the run's group; ``D``: the orchestrator
  lets go of the run (cancelled): SIGKILL its group, and it counts as orphaned.
- From the supervisor, text: ``P <number> <pid> <start time>`` once it started the run,
  with the read ends of the run's stdout and stderr pipes (non-blocking). It makes the
  pipes, the ``folders`` if missing (the run folder and its working folder) and finds the
  run's start time (0 where unknown; found before the run can be reaped, so even a run
  that is already over has it; see :class:`_SpawnClock`): their kernel time is spent here,
  not in the orchestrator. Or ``F <number> <errno> <message>`` if it could not make a folder,
  ``E <number> <errno> <message>`` if it could not start it; finally ``X <number> <exit
  code>`` (negative: killed by that signal). Answers wait in a queue here while the
  orchestrator is not reading: the supervisor never blocks on it.

One shared socket, not one per run: a run costs a message to start it and two answers, and no
socket of its own (``benchmarks/bench_overhead.py``).

For each run, in this order: the run starts in a new session (its own process group, so
signals reach its grandchildren); when it exits its status is appended to the status file
(``{"run": ID, "exit_code": 0, "orphaned": false}``) and this copy of it closed, what is left
of its group gets SIGKILL, and only then is it reaped and ``X`` sent. So once no copy of the
status file is open (the orchestrator gone, every run written down) it is unlocked and holds
the final word, and a signal from here never reaches a recycled pid.

When the orchestrator is gone (the control socket reads EOF), each of its
runs gets SIGTERM, then SIGKILL :data:`ORPHAN_GRACE_S` later; their statuses say
``"orphaned": true``. When no run is left, the supervisor exits. Status files are not fsynced:
they survive any process's crash, like the journal's last transactions; a power cut may lose
both (the run then counts as lost and runs again).
"""

from __future__ import annotations

import array
import collections
import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "MAX_PART",
    "ORPHAN_GRACE_S",
    "START",
    "STATUS_FILE",
    "WORD",
    "main",
    "make_folder",
    "status_record",
]

#: A run folder's own exit-status file, in homes made before the shared status files.
STATUS_FILE = "exit_status.json"
#: Seconds an orphaned run gets between SIGTERM and SIGKILL.
ORPHAN_GRACE_S = 0.5
#: Seconds an orphan is waited for after its SIGKILL (a process in uninterruptible sleep may
#: take long to die); then the supervisor exits anyway and that status stays unwritten.
_GIVE_UP_S = 5.0
#: ``R``, the run's number, the request's size in bytes: the head of a run's first message.
START = struct.Struct("!cII")
#: A word about a run: its letter (``C``, ``T``, ``K``, ``D``) and its number.
WORD = struct.Struct("!cI")
#: Most request bytes in one message (a datagram must fit the socket's buffer).
MAX_PART = 32 * 1024
_FDS_PER_RUN = 1
_SIGNALS = {b"T": signal.SIGTERM, b"K": signal.SIGKILL}
#: Received descriptors close on exec (Linux); runs get none of them anyway (``close_fds``).
_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def status_record(run_id: str, exit_code: int, orphaned: bool) -> bytes:
    """The line recording how a run ended (``exit_status.read_exit_statuses`` finds it)."""
    record = {"run": run_id, "exit_code": exit_code, "orphaned": orphaned}
    return json.dumps(record).encode() + b"\n"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _send(control: socket.socket, message: bytes, fds: list[int] | None) -> None:
    """One message, with ``fds`` (closed here once sent)."""
    if fds:
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        control.sendmsg([message], rights)
        close_all(fds)
    else:
        control.send(message)


def close_all(fds: Iterable[int] | None) -> None:
    for fd in fds or ():
        with contextlib.suppress(OSError):
            os.close(fd)


def receive(sock: socket.socket, size: int, fds_space: int, flags: int) -> tuple[bytes, list[int]]:
    """One message and the descriptors that came with it (both ends of the control socket
    read this way); ``b""`` when the other end is gone. BlockingIOError: nothing waits."""
    try:
        data, ancillary, _, _ = sock.recvmsg(size, fds_space, flags)
    except BlockingIOError:
        raise
    except OSError:
        return b"", []
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


#: Signals this process ignores (Python does) that a run must find at their default.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


def _spawn(argv: list[str], env: dict[str, str], *stdio: int) -> int:
    """Start ``argv`` in this process's current folder (the run's, see :func:`_enter`), in a
    new session, its stdin, stdout and stderr ``stdio``; its pid. ``posix_spawn`` (a vfork
    and an exec: no copy of this process, no Python in the child) costs a fraction of
    ``subprocess.Popen``'s fork; the program is looked for as ``Popen`` does (on the run's
    ``PATH`` unless it names a folder; the first error other than "not there" is the one
    raised)."""
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise ValueError("the command must be a list of strings")
    program = argv[0]
    if os.path.dirname(program):
        candidates = [program]
    else:
        candidates = [os.path.join(folder, program) for folder in os.get_exec_path(env)]
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    first: OSError | None = None
    for path in candidates:
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


def _close_inherited(keep: int) -> None:
    """Close every descriptor above stderr but ``keep`` (what the orchestrator's own parent
    left inheritable): ``posix_spawn`` passes on whatever is not close-on-exec, and runs must
    get nothing but their stdio, as ``Popen(close_fds=True)`` gave them."""
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
    os.closerange(3, keep)
    os.closerange(keep + 1, max(top, keep + 1))


def _enter(folder: str) -> None:
    """``chdir`` into the run's working folder, made first only when it is missing (the
    common case, an existing folder, costs no ``mkdir``)."""
    try:
        os.chdir(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        os.chdir(folder)


class _SpawnClock:
    """A child's start time without reading ``/proc`` for most runs.

    The kernel stamps a child with the boot-time clock when it is made, and ``/proc`` shows
    that stamp in clock ticks (Linux 5.3 and later). Read the same clock before and after the
    spawn: when both fall in one tick, that tick is the child's start time. Otherwise (one
    spawn in ten or so) it is read from ``/proc``, and so is every :data:`CHECK_EVERY`-th
    one the clock answered, to check it: one disagreement and ``/proc`` answers from then
    on."""

    #: Every this many start times the clock gave, one is read from ``/proc`` as well.
    CHECK_EVERY = 256

    def __init__(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0
        self.per_tick = 10**9 // ticks if ticks > 0 and 10**9 % ticks == 0 else 0
        self.trusted = self.per_tick > 0 and hasattr(time, "CLOCK_BOOTTIME")
        self.answered = 0

    def now(self) -> int:
        """The boot-time clock's tick now (0 when the clock is not used)."""
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // self.per_tick if self.trusted else 0

    def start_time(self, pid: int, before: int) -> int:
        """The start time of ``pid``, spawned between tick ``before`` (:meth:`now`) and now;
        0 where unknown."""
        if self.trusted and before and before == self.now():
            self.answered += 1
            if (self.answered - 1) % self.CHECK_EVERY:  # the first, then one in CHECK_EVERY
                return before
            read = _start_time(pid)
            if read in (0, before):  # 0: /proc cannot say; the clock still can
                return before
            self.trusted = False
            return read
        return _start_time(pid)


def _start_time(pid: int) -> int:
    """The process's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot; see
    ``orchestrator.procinfo``), 0 where unknown. The caller is its parent and has not reaped
    it, so the pid is still this process's even if it has exited."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def make_folder(folder: str | os.PathLike[str]) -> None:
    """``os.makedirs(folder, exist_ok=True)`` in one ``mkdir`` when its parent exists (the
    orchestrator names parents first), not a ``stat`` per level first."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        if not os.path.isdir(folder):
            raise
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)


def _one_line(text: str) -> bytes:
    return " ".join(text.split()).encode(errors="replace")


class _Run:
    """One run, from its request to its reaping."""

    def __init__(self, number: int, size: int, status_fd: int) -> None:
        self.number = number
        #: The request as it arrives, and its size once complete.
        self.request = bytearray()
        self.size = size
        self.run_id = ""
        self.pid: int | None = None
        #: A copy of the locked status file: closed once the status is appended (or never).
        self.status_fd: int | None = status_fd
        self.orphaned = False
        #: When an orphan gets SIGKILL, then when it is given up on.
        self.kill_at: float | None = None
        self.give_up_at: float | None = None

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
        control.setblocking(False)
        self.grace = grace
        self.selector = selectors.DefaultSelector()
        #: Runs by number: those whose request is still arriving, and those not yet reaped.
        self.runs: dict[int, _Run] = {}
        #: Started and not yet reaped, by pid.
        self.alive: dict[int, _Run] = {}
        #: Answers the orchestrator has not taken yet (its socket buffer was full).
        self.outbox: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        #: The environment runs' requests name only their differences from (``base``).
        self.base_env: dict[str, str] = {}
        self.clock = _SpawnClock()
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
            for key, mask in self.selector.select(self._timeout()):
                callback: Callable[[int], None] = key.data
                callback(mask)
            self._reap()
            self._kill_due()

    def _timeout(self) -> float | None:
        due = [t for run in self.alive.values() for t in (run.kill_at, run.give_up_at) if t]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _on_wake(self, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass

    def _given_up(self) -> bool:
        now = time.monotonic()
        return all(0 < (run.give_up_at or 0) <= now for run in self.alive.values())

    # ------------------------------------------------------------------ answers
    def answer(self, message: bytes, fds: list[int] | None = None) -> None:
        """Send ``message`` (with ``fds``, which are then closed here) to the orchestrator, or
        queue it while its buffer is full."""
        if self.control is None:
            close_all(fds)
            return
        if not self.outbox:
            try:
                _send(self.control, message, fds)
                return
            except BlockingIOError:
                pass
            except OSError:
                close_all(fds)
                return  # gone: its EOF is read next
            self.selector.modify(
                self.control, selectors.EVENT_READ | selectors.EVENT_WRITE, self._on_control
            )
        self.outbox.append((message, fds or []))

    def _flush(self) -> None:
        assert self.control is not None
        try:
            while self.outbox:
                _send(self.control, *self.outbox[0])
                self.outbox.popleft()
        except BlockingIOError:
            return
        except OSError:
            self._drop_outbox()
        self.selector.modify(self.control, selectors.EVENT_READ, self._on_control)

    def _drop_outbox(self) -> None:
        for _, fds in self.outbox:
            close_all(fds)
        self.outbox.clear()

    # ------------------------------------------------------------------ requests
    def _on_control(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and self.control is not None:
            self._flush()
        while mask & selectors.EVENT_READ and self.control is not None:
            try:
                data, fds = receive(
                    self.control,
                    START.size + MAX_PART,
                    socket.CMSG_SPACE(_FDS_PER_RUN * 4),
                    _CMSG_CLOEXEC,
                )
            except BlockingIOError:
                return
            if not data:
                close_all(fds)
                self._orchestrator_gone()
                return
            self._on_message(data, fds)

    def _on_message(self, data: bytes, fds: list[int]) -> None:
        kind = data[:1]
        if kind == b"R" and len(fds) == _FDS_PER_RUN and len(data) >= START.size:
            _, number, size = START.unpack_from(data)
            new = self.runs[number] = _Run(number, size, fds[0])
            self._more(new, data[START.size :])
            return
        close_all(fds)  # descriptors with anything but a start: not ours to keep
        if len(data) < WORD.size:
            return
        _, number = WORD.unpack_from(data)
        run = self.runs.get(number)
        if run is None:  # reaped already: the word crossed its X
            return
        if kind == b"C" and run.pid is None:
            self._more(run, data[WORD.size :])
        elif kind in _SIGNALS and run.pid is not None:
            _signal_group(run.pid, _SIGNALS[kind])
        elif kind == b"D":
            if run.pid is None:
                self._forget(run)
            else:
                _signal_group(run.pid, signal.SIGKILL)
                self._orphan(run)

    def _more(self, run: _Run, part: bytes) -> None:
        run.request += part
        if len(run.request) < run.size:
            return
        try:
            request = json.loads(run.request)
        except ValueError:
            request = {}
        run.request = bytearray()
        self._take_base(request)
        self._start(run, request)

    def _start(self, run: _Run, request: dict[str, Any]) -> None:
        try:
            for folder in request.get("folders", []):
                make_folder(folder)
            _enter(request["cwd"])  # left again (for "/") once the run is spawned
        except (OSError, TypeError, KeyError) as exc:
            code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
            self.answer(b"F %d %d %s" % (run.number, code, _one_line(str(exc))))
            self._forget(run)
            return
        try:
            out_r, out_w = os.pipe()
        except OSError:
            os.chdir("/")
            raise
        try:
            err_r, err_w = os.pipe()
        except OSError:
            close_all([out_r, out_w])
            os.chdir("/")
            raise
        try:
            run.run_id = str(request["run"])
            env = self._environment(request)
            before = self.clock.now()
            run.pid = _spawn(request["argv"], env, self.devnull, out_w, err_w)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            close_all([out_r, err_r])
            code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
            text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            self.answer(b"E %d %d %s" % (run.number, code, _one_line(text)))
            self._forget(run)  # its status stays empty: it never ran
            return
        finally:
            os.chdir("/")  # hold no run's folder busy
            close_all([out_w, err_w])  # the run holds them now: EOF comes when its group exits
        self.alive[run.pid] = run
        for fd in (out_r, err_r):  # the flag goes with the descriptor to the orchestrator
            fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)  # a read end has no other flag
        started = self.clock.start_time(run.pid, before)
        self.answer(b"P %d %d %d" % (run.number, run.pid, started), [out_r, err_r])
        if self.control is None:  # the orchestrator went while this request was arriving
            self._orphan(run)

    def _take_base(self, request: dict[str, Any]) -> None:
        """A request that brings a base environment: it is the base from now on (taken as
        soon as the request is read, whatever becomes of its run)."""
        base = request.get("base")
        if isinstance(base, dict):
            self.base_env = base

    def _environment(self, request: dict[str, Any]) -> dict[str, str]:
        """The run's environment: its ``env`` over the base, its ``unset`` names taken out."""
        env = {**self.base_env, **request["env"]}
        for name in request.get("unset", ()):
            env.pop(name, None)
        return env

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
            # The kernel's accounting of the run: its CPU time and peak RSS, its own and its
            # children's that it waited for.
            _, _, usage = os.wait4(pid, 0)
            if run is not None:
                cpu_us = round((usage.ru_utime + usage.ru_stime) * 1e6)
                self.answer(b"X %d %d %d %d" % (run.number, code, cpu_us, usage.ru_maxrss))
                self._forget(run)

    def _orchestrator_gone(self) -> None:
        if self.control is not None:
            self.selector.unregister(self.control)
            self.control.close()
            self.control = None
        self._drop_outbox()
        for run in list(self.runs.values()):
            if run.pid is None:
                self._forget(run)
            else:
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

    def _forget(self, run: _Run) -> None:
        run.close_status()
        self.runs.pop(run.number, None)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd = int(args[0])
    if argv is None:  # this process's own start: runs inherit nothing but their stdio
        _close_inherited(fd)
    control = socket.socket(fileno=fd)
    control.set_inheritable(False)
    grace = float(args[1]) if len(args) > 1 else ORPHAN_GRACE_S
    os.chdir("/")  # hold no folder busy; every run names its own working folder
    Supervisor(control, grace).serve()


if __name__ == "__main__":
    main()
