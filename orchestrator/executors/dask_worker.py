"""The half of a Dask run that executes on a worker: one task per run attempt.

The task (:func:`run_on_worker`) claims its attempt, has the command started by this worker
process's supervisor (:mod:`orchestrator.executors.dask_supervisor`, one for all its runs,
started by the first: the commands die with the worker), and ships the command's output to
the orchestrator as it comes, as worker events on the orchestrator client's topic
(``log_event``: fire and forget, no round trip; the orchestrator subscribes to its own client
id). Messages, each a dict naming its attempt's key in ``run``:

- ``{"kind": "started", "pid", "worker", "host"}`` once the command runs;
- ``{"kind": "out", "stream": "stdout"|"stderr", "data": bytes}``: raw output, at most
  :data:`BATCH` bytes, whatever was ready (lines may span messages: the orchestrator splits
  them, as for a local run);
- ``{"kind": "end", "exit_code", "cpu_us", "rss_kib"}`` after the last output (and, for a
  run in a scratch folder, ``outputs``: how many entries of its ``outputs/`` the task's
  result holds, or ``outputs_error``; see :mod:`orchestrator.executors.dask_scratch`); or
  ``{"kind": "start-error", "errno", "strerror"}`` when the command could not be started,
  ``{"kind": "error", "error"}`` when the attempt could not even get that far. These, not the
  task's result, close the run's stream: the result may overtake the last output;
- ``{"kind": "duplicate"}`` from a second execution that found the attempt claimed (so the
  orchestrator never fetches a result).

No second execution: Dask runs a lost worker's tasks again elsewhere (and a worker lost after
a task ended makes the scheduler compute it again while its future is held). The task's first
act is to check and set a claim, a Dask ``Event`` named after its key: a second execution of
the same attempt finds it set and returns ``{"status": "duplicate"}`` without starting
anything. The orchestrator clears the claim once the attempt ended.

Stop: the orchestrator asks with :func:`signal_run` (``Client.run`` on the run's worker) for
SIGTERM or SIGKILL to the command's group. A task the scheduler cancels (its future released,
or the orchestrator's client gone: the scheduler drops a lost client's tasks) stops its
command itself: SIGTERM, the grace, SIGKILL. So an orchestrator that dies or disconnects
leaves nothing running.

A worker that does not see the run's folder (a home the workers do not share) runs the
attempt in a scratch folder of its own: :mod:`orchestrator.executors.dask_scratch`.

Standard library and ``distributed`` only (the scratch module aside, imported when needed):
it is imported on the workers (and, to unpickle the task, on the scheduler), which need the
orchestrator installed, same version.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from distributed import Event, get_worker

__all__ = ["BATCH", "claim_name", "forget_claims", "run_on_worker", "signal_run"]

#: Most output bytes in one message.
BATCH = 32 * 1024
#: Seconds between two looks at whether the scheduler cancelled the task.
_POLL_S = 0.05
#: Seconds the output pipes may stay open after the command exited (a daemonised
#: grandchild of another session holds them).
_DRAIN_S = 2.0
_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dask_supervisor.py")
#: Task states meaning "stop it": the scheduler no longer wants the result.
_UNWANTED = frozenset({"cancelled", "released", "forgotten"})


def claim_name(key: str) -> str:
    """The name of the Dask ``Event`` that an attempt's first execution sets."""
    return f"orchestrator-claim-{key}"


def forget_claims(names: list[str], dask_scheduler: Any = None) -> None:
    """Clear spent claims (run on the scheduler by ``Client.run_on_scheduler``)."""
    events = dask_scheduler.extensions["events"]
    for name in names:
        events.event_clear(name=name)


class _Supervisor:
    """This worker process's supervisor (:mod:`orchestrator.executors.dask_supervisor`), one
    for all its runs: started by the first, again by the next if it died. Only this process
    holds its end of the supervisor's socket (not inheritable): the supervisor sees it close
    however this process dies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None

    def send(self, message: bytes, fds: list[int] | None = None) -> None:
        """One message (with ``fds``); OSError when the supervisor cannot be told."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            assert self.channel is not None
            socket.send_fds(self.channel, [message], fds or [])

    def _start(self) -> None:
        if self.channel is not None:
            self.channel.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", _SUPERVISOR],
                stdin=theirs.fileno(),
                start_new_session=True,
            )
        finally:
            theirs.close()
        with contextlib.suppress(OSError):  # the system may cap it: then larger runs fail
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.channel = ours


_SUPERVISOR_OF_RUNS = _Supervisor()


class _Attempt:
    """A running command, as this worker holds it: what :func:`signal_run` may say to it."""

    def __init__(self, key: str) -> None:
        self.key = key

    def say(self, word: bytes) -> None:
        """To the supervisor: ``T`` SIGTERM, ``K`` SIGKILL the command's group; ``E`` the
        task is over (a command still running: SIGTERM, the grace, SIGKILL)."""
        with contextlib.suppress(OSError):
            _SUPERVISOR_OF_RUNS.send(word + b" " + self.key.encode())


#: The attempts running on this worker, by key.
_ATTEMPTS: dict[str, _Attempt] = {}


def signal_run(key: str, word: str) -> bool:
    """``T`` or ``K`` to attempt ``key``'s command group (run on its worker by ``Client.run``);
    False when no such attempt runs here."""
    attempt = _ATTEMPTS.get(key)
    if attempt is None or word not in ("T", "K"):
        return False
    attempt.say(word.encode())
    return True


def _reader(fd: int, name: str, out: queue.Queue[tuple[str, bytes | None]], close: bool) -> None:
    """Copy one pipe into ``out`` as it is read; ``None`` at its end (then the pipe is closed,
    when ``close`` says so: only this thread still reads it)."""
    try:
        while True:
            try:
                data = os.read(fd, BATCH)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            except OSError:
                data = b""
            if not data:
                break
            out.put((name, data))
    finally:
        if close:
            with contextlib.suppress(OSError):
                os.close(fd)
        out.put((name, None))


def _start_thread(target: Any, *args: Any) -> None:
    thread = threading.Thread(target=target, args=args)
    thread.daemon = True
    thread.start()


class _Shipper:
    """Sends one attempt's messages on the orchestrator's topic."""

    def __init__(self, topic: str, key: str) -> None:
        self.worker = get_worker()
        self.topic = topic
        self.key = key

    def send(self, kind: str, **fields: Any) -> None:
        self.worker.log_event(self.topic, {"run": self.key, "kind": kind, **fields})

    def unwanted(self) -> bool:
        """The scheduler cancelled or forgot the task (a stop, a released future, a client
        gone)."""
        task = self.worker.state.tasks.get(self.key)
        return task is None or task.state in _UNWANTED


def _claimed(key: str) -> bool:
    """Set the attempt's claim; False when an earlier execution set it already."""
    event: Any = Event  # distributed's API is untyped
    claim = event(claim_name(key))
    if claim.is_set():
        return False
    claim.set()
    return True


def _environment(extra: dict[str, str], unset: list[str]) -> dict[str, str]:
    """The command's environment: this worker's, unbuffered, with this worker's interpreter
    first on ``PATH`` (as the orchestrator does for a local run), then what the run says
    (its spec's ``env``, the ``ORCHESTRATOR_*`` variables), without ``unset``."""
    env = {"PYTHONUNBUFFERED": "1", **os.environ}
    folder = os.path.dirname(sys.executable)
    entries = env.get("PATH", os.defpath).split(os.pathsep)
    if entries[0] != folder:
        env["PATH"] = os.pathsep.join([folder, *entries])
    env["ORCHESTRATOR_PYTHON"] = sys.executable
    env.update(extra)
    for name in unset:
        env.pop(name, None)
    return env


def run_on_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt (``spec``: ``key``, ``topic``, ``argv``, ``env``, ``cwd``, ``run_dir``,
    ``unset``, ``grace``; for a worker that does not see ``run_dir``, or where ``scratch``
    says so: ``init`` or ``init_error``, ``outputs_max_files``, ``outputs_max_bytes``) to its
    end; see the module's docstring for what it sends."""
    key = str(spec["key"])
    shipper = _Shipper(str(spec["topic"]), key)
    if not _claimed(key):
        shipper.send("duplicate")
        return {"status": "duplicate"}
    scratch: Any = None
    argv, env, cwd = list(spec["argv"]), dict(spec["env"]), str(spec["cwd"])
    if spec.get("scratch") or not os.path.isdir(spec["run_dir"]):
        scratch = _scratch(spec, shipper)
        if scratch is None:
            return {"status": "error"}
        argv, env, cwd = scratch.argv, scratch.env, scratch.cwd
    try:
        return _supervise(spec, shipper, argv, _environment(env, list(spec["unset"])), cwd, scratch)
    finally:
        if scratch is not None:
            scratch.remove()


def _scratch(spec: dict[str, Any], shipper: _Shipper) -> Any:
    """The attempt's scratch folder on this worker, its init done there
    (:mod:`orchestrator.executors.dask_scratch`); None once the reason it cannot be is sent."""
    where = socket.gethostname()
    if spec.get("init_error"):
        shipper.send("error", error=f"{spec['init_error']} ({where})")
        return None
    from orchestrator.exceptions import ExecutorError
    from orchestrator.executors.dask_scratch import prepare

    local = getattr(shipper.worker, "local_directory", None) or tempfile.gettempdir()
    try:
        return prepare(spec, local)
    except ExecutorError as exc:
        shipper.send("error", error=f"{exc} (on the Dask worker {where})")
    except OSError as exc:
        error = f"cannot prepare the run's folder on the Dask worker {where}: {exc}"
        shipper.send("error", error=error)
    return None


def _supervise(
    spec: dict[str, Any],
    shipper: _Shipper,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    scratch: Any,
) -> dict[str, Any]:
    """Have the command started by this worker's supervisor, with pipes of its own for its
    stdout, stderr and status, and follow it to its end."""
    key = str(spec["key"])
    pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, status
    request = {"key": key, "argv": argv, "env": env, "cwd": cwd, "grace": spec["grace"]}
    try:
        _SUPERVISOR_OF_RUNS.send(b"S" + json.dumps(request).encode(), [w for _, w in pipes])
    except OSError as exc:
        for read, _ in pipes:
            os.close(read)
        detail = exc.strerror or str(exc)
        shipper.send("error", error=f"cannot start its supervisor on the Dask worker: {detail}")
        return {"status": "error"}
    finally:
        for _, write in pipes:
            os.close(write)
    attempt = _ATTEMPTS[key] = _Attempt(key)
    try:
        return _follow(spec, shipper, attempt, [read for read, _ in pipes], scratch)
    finally:
        _ATTEMPTS.pop(key, None)
        attempt.say(b"E")  # a command still running is stopped


def _follow(
    spec: dict[str, Any], shipper: _Shipper, attempt: _Attempt, fds: list[int], scratch: Any
) -> dict[str, Any]:
    """Start the threads that read the attempt's pipes (``fds``: stdout, stderr, status),
    then ship what they read until the command ended and its output is all sent."""
    out_fd, err_fd, status_fd = fds
    # Unbuffered: the exit line may follow at once, and it is for the reader thread to read.
    with os.fdopen(status_fd, "rb", buffering=0) as status:
        first = status.readline().decode(errors="replace").split(" ", 2)
        if first[0] != "P":
            os.close(out_fd)
            os.close(err_fd)
            number = int(first[1]) if len(first) == 3 else 0
            text = first[2].strip() if len(first) == 3 else "its supervisor died"
            if first[0] == "C":
                error = (
                    f"cannot start its working folder on the Dask worker: {text} ({spec['cwd']})"
                )
                shipper.send("error", error=error)
            else:
                shipper.send("start-error", errno=number, strerror=text)
            return {"status": "error"}
        shipper.send(
            "started",
            pid=int(first[1]),
            worker=shipper.worker.address,
            host=socket.gethostname(),
        )
        chunks: queue.Queue[tuple[str, bytes | None]] = queue.Queue()
        _start_thread(_reader, out_fd, "stdout", chunks, True)
        _start_thread(_reader, err_fd, "stderr", chunks, True)
        _start_thread(_reader, status.fileno(), "status", chunks, False)
        exit_line = _ship(spec, shipper, attempt, chunks)
    fields = exit_line.split()
    if len(fields) != 4 or fields[0] != "X":
        shipper.send("error", error="the run's supervisor on the Dask worker died")
        return {"status": "error"}
    ended = {"exit_code": int(fields[1]), "cpu_us": int(fields[2]), "rss_kib": int(fields[3])}
    result = {"status": "exited", "exit_code": ended["exit_code"]}
    if scratch is not None:
        result["files"], shipped = _packed(spec, scratch)
        ended.update(shipped)
    shipper.send("end", **ended)
    return result


def _packed(spec: dict[str, Any], scratch: Any) -> tuple[list[Any], dict[str, Any]]:
    """A scratch run's ``outputs/``, packed for the task's result, and what the end message
    says of it: ``outputs`` (how many entries) or ``outputs_error``."""
    from orchestrator.executors.dask_scratch import OUTPUTS_LIMIT, pack_outputs

    try:
        files, error = pack_outputs(
            scratch.outputs, int(spec["outputs_max_files"]), int(spec["outputs_max_bytes"])
        )
    except OSError as exc:
        files, error = [], f"{OUTPUTS_LIMIT}: cannot read outputs/ on the Dask worker: {exc}"
    return files, ({"outputs": len(files)} if error is None else {"outputs_error": error})


def _ship(
    spec: dict[str, Any],
    shipper: _Shipper,
    attempt: _Attempt,
    chunks: queue.Queue[tuple[str, bytes | None]],
) -> str:
    """Send the output as it comes (each message what was ready, up to :data:`BATCH` bytes of
    one stream), watching for a cancelled task meanwhile, until the supervisor exited and the
    pipes ended (or stayed open :data:`_DRAIN_S` longer); returns the supervisor's exit line."""
    grace = float(spec["grace"])
    open_streams = {"stdout", "stderr", "status"}
    exit_line = b""
    kill_at: float | None = None  # the task was cancelled: SIGKILL due then
    drain_by = float("inf")
    while open_streams and time.monotonic() < drain_by:
        kill_at = _watch(shipper, attempt, kill_at, grace)
        try:
            first = chunks.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        pending, size = [first], len(first[1] or b"")
        while size < BATCH:
            try:
                more = chunks.get_nowait()
            except queue.Empty:
                break
            pending.append(more)
            size += len(more[1] or b"")
        for stream, block in _merged(pending):
            if block is None:
                open_streams.discard(stream)
                if stream == "status":  # the supervisor exited
                    drain_by = time.monotonic() + _DRAIN_S
            elif stream == "status":
                exit_line += block
            else:
                shipper.send("out", stream=stream, data=block)
    return exit_line.decode(errors="replace")


def _watch(
    shipper: _Shipper, attempt: _Attempt, stop_at: float | None, grace: float
) -> float | None:
    """Stop the command when the scheduler no longer wants the task: SIGTERM at once, SIGKILL
    after the grace; returns when SIGKILL is due (None: not stopping)."""
    if stop_at is None:
        if shipper.unwanted():
            attempt.say(b"T")
            return time.monotonic() + grace
        return None
    if time.monotonic() >= stop_at:
        attempt.say(b"K")
        return float("inf")
    return stop_at


def _merged(pending: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """Consecutive blocks of one stream as one (an end stays on its own)."""
    out: list[tuple[str, bytes | None]] = []
    for stream, block in pending:
        if out and block is not None and out[-1][0] == stream and out[-1][1] is not None:
            out[-1] = (stream, out[-1][1] + block)
        else:
            out.append((stream, block))
    return out
