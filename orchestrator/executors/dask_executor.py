"""Run jobs on a Dask cluster: each attempt a task on a worker, its output back as events.

Design (measured in ``DASK.md``): one :class:`DaskCluster` owns one asynchronous
``distributed.Client`` on the orchestrator's event loop and subscribes twice: to its own
client id, the topic every worker task sends its run's messages on
(:mod:`orchestrator.executors.dask_worker`), and to the scheduler's ``"all"`` topic, whose
``remove-worker`` events name the tasks a lost worker was running. A handler only hands each
message to its attempt's memory stream. :class:`DaskExecutor` is the ``Executor`` of one
sweep (its runs' resource request mapped onto Dask worker resources).

Per attempt: the run folder is made here, ``init`` runs here (for workers that share the
home: the run's folder at the same path there), then one task is submitted (``pure=False``,
``retries=0``, a key of its own per attempt) and its messages followed: ``started`` makes the
run RUNNING (and says where: :attr:`Job.placement`, journaled with it), ``out`` blocks are
written to the run's log files byte for byte and split into lines exactly as for a local run
(metrics, the stderr tail), ``end`` gives the exit code. Logs, metrics and the exit status
thus always come back to this home. On a shared home the command writes its ``outputs``
into the run's folder itself; a worker that does not see the run's folder (or every worker,
with the ``orchestrator.scratch`` setting) runs the attempt in a scratch folder of its own,
its init done there, and ships ``outputs/`` back in the task's result, which is written here
(:mod:`orchestrator.executors.dask_scratch`).

A run waiting for a worker (submitted, not started) is looked at again whenever a worker
leaves or comes: when none left offers what it asks, it fails with ``no_worker`` after
:attr:`Settings.no_worker_wait`, unless one comes meanwhile (Dask alone would keep it waiting
in its ``no-worker`` state, silently, for ever).

A worker lost while it ran the command (``remove-worker``, a task that failed as
``KilledWorker``, or a re-execution that found the attempt claimed) ends the attempt
``worker_lost``: whether the run goes again is ``termination.maxRetries``' decision, as a new
attempt under a new key, never Dask's (the claim keeps a re-execution by Dask from starting
anything, and the future is released at once, which makes the scheduler drop it). A worker
lost before the command started is Dask's business: the task runs elsewhere.

Stop: SIGTERM to the command's group, then SIGKILL after the grace (or at once), sent to the
run's worker with ``Client.run``; an attempt not started yet is cancelled. When this process
dies or its client disconnects, the scheduler cancels its tasks, and each one stops its
command (SIGTERM, the grace, SIGKILL).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.engine.jobs import base_environment
from orchestrator.exceptions import ExecutorError
from orchestrator.executors.base import Job, Outcome, OutputSink, Placement, StopRequest
from orchestrator.executors.dask_scratch import OUTPUTS_LIMIT, inline_init, unpack_outputs
from orchestrator.executors.init import prepare_init
from orchestrator.executors.local import _Log, _start_error, _Stream
from orchestrator.spec.resources import ResourceRequest, format_bytes, format_milli
from orchestrator.store.layout import git_cache_dir

__all__ = ["WORKER_LOST", "DaskCluster", "DaskExecutor", "dask_resources"]

#: The reason of a run whose worker was lost while it ran it.
WORKER_LOST = "worker_lost"
#: Seconds a spent claim is kept before it is cleared on the scheduler: by then the release
#: of its future has surely reached the scheduler (no recomputation can find it cleared).
_CLAIM_KEEP_S = 5.0
_NEEDS_DISTRIBUTED = (
    "--executor dask needs the distributed package: pip install 'orchestrator[dask]'"
)
#: Seconds a task's end message may lag behind its result (it never should: both come on
#: the scheduler's one stream to us, the message first).
_END_WAIT_S = 2.0


@dataclass(frozen=True)
class Settings:
    """How the executor treats homes and workers. Each is also a dask config key (read when
    the cluster is opened): ``orchestrator.`` and its name with dashes, as
    ``orchestrator.no-worker-wait: 30s`` in ``~/.config/dask/*.yaml`` or
    ``DASK_ORCHESTRATOR__NO_WORKER_WAIT=30s``; the defaults are these."""

    #: Every run in a scratch folder on its worker, as if the workers did not share the home
    #: (they are assumed to where they see the run's folder).
    scratch: bool = False
    #: Seconds a run waiting for a worker waits after the last worker that could take it left.
    no_worker_wait: float = 60.0
    #: The most bytes of init file contents a run takes to a worker that lacks the home.
    init_max_bytes: int = 1 << 20
    #: The most entries and bytes of ``outputs/`` such a worker ships back.
    outputs_max_files: int = 1000
    outputs_max_bytes: int = 128 << 20

    @classmethod
    def configured(cls, asked: Mapping[str, Any]) -> Settings:
        """``asked``, the rest from the dask config (read now: its files, ``DASK_*``)."""
        import dask.config
        from dask.utils import parse_bytes, parse_timedelta

        get: Any = dask.config.get
        default = cls()

        def value(name: str) -> Any:
            if name in asked:
                return asked[name]
            return get(f"orchestrator.{name.replace('_', '-')}", getattr(default, name))

        scratch = value("scratch")
        return cls(
            scratch=scratch if isinstance(scratch, bool) else str(scratch).lower() == "true",
            no_worker_wait=float(parse_timedelta(value("no_worker_wait"), default="s")),
            init_max_bytes=int(parse_bytes(value("init_max_bytes"))),
            outputs_max_files=int(value("outputs_max_files")),
            outputs_max_bytes=int(parse_bytes(value("outputs_max_bytes"))),
        )


def dask_resources(request: ResourceRequest, offered: Iterable[str]) -> dict[str, float]:
    """``container.resources`` as Dask worker resources: ``GPU`` (cards, fractions allowed),
    ``CPU`` (cores), ``MEM`` (bytes). GPUs are always asked for; CPU and memory only when some
    worker advertises them (``offered``): elsewhere Dask's threads per worker bound the runs,
    and a request for a resource no worker has would wait for ever."""
    names = set(offered)
    wanted: dict[str, float] = {}
    if request.gpu_milli:
        wanted["GPU"] = request.gpu_milli / 1000
    if request.cpu_milli and "CPU" in names:
        wanted["CPU"] = request.cpu_milli / 1000
    if request.memory and "MEM" in names:
        wanted["MEM"] = float(request.memory)
    return wanted


def _shown(wanted: Mapping[str, float]) -> str:
    parts = []
    for name, amount in wanted.items():
        if name == "MEM":
            parts.append(f"MEM={format_bytes(int(amount))}")
        else:
            parts.append(f"{name}={format_milli(round(amount * 1000))}")
    return ", ".join(parts)


class _Attempt:
    """One submitted attempt, as the router sees it: where its messages go, where it runs."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.send: MemoryObjectSendStream[dict[str, Any]]
        self.receive: MemoryObjectReceiveStream[dict[str, Any]]
        self.send, self.receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        #: The worker's address, once it started the command.
        self.worker: str | None = None
        #: No worker offers what it asks any more: it waits for one to come.
        self.waiting = False

    def put(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.send.send_nowait(message)


class DaskCluster:
    """The connection to one Dask scheduler, for every sweep of this process: open it with
    ``async with`` on the orchestrator's event loop."""

    def __init__(
        self,
        address: str,
        *,
        grace: float = 10.0,
        connect_timeout: float = 10.0,
        scratch: bool | None = None,
        no_worker_wait: float | None = None,
        init_max_bytes: int | None = None,
        outputs_max_files: int | None = None,
        outputs_max_bytes: int | None = None,
    ) -> None:
        self.address = address
        #: Seconds between SIGTERM and SIGKILL when a run is stopped on its worker's own
        #: initiative: its task cancelled (this process gone or disconnected), its worker gone.
        self.grace = grace
        self.connect_timeout = connect_timeout
        asked = {
            "scratch": scratch,
            "no_worker_wait": no_worker_wait,
            "init_max_bytes": init_max_bytes,
            "outputs_max_files": outputs_max_files,
            "outputs_max_bytes": outputs_max_bytes,
        }
        self._asked: dict[str, Any] = {k: v for k, v in asked.items() if v is not None}
        #: These, or the dask config's (``orchestrator.*``, :class:`Settings`) where not
        #: given here: read when the cluster is opened.
        self.settings = Settings(**self._asked)
        self._client: Any = None
        self._attempts: dict[str, _Attempt] = {}
        #: Claims of ended attempts, with when they ended, still to clear on the scheduler.
        self._spent: deque[tuple[float, str]] = deque()
        #: Worker events seen (``add-worker``, ``remove-worker``), and the workers' resources
        #: as asked of the scheduler after the latest of them (its count then).
        self._worker_events = 0
        self._workers: tuple[int, dict[str, dict[str, float]]] | None = None
        self._workers_lock: anyio.Lock | None = None

    def check(self) -> None:
        """Fail early, before anything is journaled, with one line (ExecutorError): no
        ``distributed`` installed, or nothing listening at the scheduler's address."""
        import importlib.util
        import socket
        from urllib.parse import urlsplit

        if importlib.util.find_spec("distributed") is None:
            raise ExecutorError(_NEEDS_DISTRIBUTED)
        parts = urlsplit(self.address)
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
            return  # other transports: the client says what is wrong when it connects
        try:
            socket.create_connection((parts.hostname, parts.port), self.connect_timeout).close()
        except OSError as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {self.address}: {exc.strerror or exc}"
            ) from None

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (untyped)."""
        if self._client is None:
            raise ExecutorError("the Dask executor is used before its cluster was opened")
        return self._client

    async def __aenter__(self) -> DaskCluster:
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError(_NEEDS_DISTRIBUTED) from None

        connect: Any = Client  # distributed's API is untyped
        try:
            client = await connect(
                self.address,
                asynchronous=True,
                timeout=self.connect_timeout,
                set_as_default=False,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {self.address}: {exc}"
            ) from None
        self._client = client
        self.settings = Settings.configured(self._asked)
        client.subscribe_topic(client.id, self._on_run_event)
        client.subscribe_topic("all", self._on_cluster_event)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            with contextlib.suppress(Exception):
                await self._clear_claims(client, everything=True)
            # Unsubscribed first: the scheduler would tell our closed connection of our leaving.
            client.unsubscribe_topic(client.id)
            client.unsubscribe_topic("all")
            await client.close()

    def executor(self, request: ResourceRequest | None = None) -> DaskExecutor:
        """The executor of a sweep whose runs need ``request`` each."""
        return DaskExecutor(self, request or ResourceRequest())

    # ------------------------------------------------------------------ the router
    def _on_run_event(self, event: tuple[float, Any]) -> None:
        message = event[1]
        if not isinstance(message, dict):  # not a run's (the scheduler's own news)
            return
        attempt = self._attempts.get(message.get("run", ""))
        if attempt is not None:
            if message.get("kind") == "started":
                attempt.worker = message.get("worker")
            attempt.put(message)

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        message = event[1]
        action = message.get("action") if isinstance(message, dict) else None
        if action not in ("remove-worker", "add-worker"):
            return
        worker = message.get("worker")
        keys = set(message.get("processing-tasks") or ())
        for attempt in list(self._attempts.values()):
            if action == "remove-worker" and (
                attempt.key in keys or (worker is not None and attempt.worker == worker)
            ):
                attempt.put({"kind": "lost", "worker": worker})
            if attempt.worker is None and (action == "remove-worker" or attempt.waiting):
                attempt.put({"kind": "recheck"})  # is there still a worker for it?
        self._worker_events += 1

    def open(self, key: str) -> _Attempt:
        attempt = self._attempts[key] = _Attempt(key)
        return attempt

    def close(self, attempt: _Attempt) -> None:
        self._attempts.pop(attempt.key, None)
        attempt.send.close()
        attempt.receive.close()
        self._spent.append((time.monotonic(), attempt.key))

    # ------------------------------------------------------------------ claims
    async def clear_spent_claims(self) -> None:
        """Clear the claims of attempts that ended a while ago (one scheduler call for all)."""
        if self._spent and self._spent[0][0] < time.monotonic() - _CLAIM_KEEP_S:
            await self._clear_claims(self.client, everything=False)

    async def _clear_claims(self, client: Any, *, everything: bool) -> None:
        from orchestrator.executors.dask_worker import claim_name, forget_claims

        due = time.monotonic() - _CLAIM_KEEP_S
        names = []
        while self._spent and (everything or self._spent[0][0] < due):
            names.append(claim_name(self._spent.popleft()[1]))
        if names:
            await client.run_on_scheduler(forget_claims, names)

    # ------------------------------------------------------------------ workers
    def offered(self) -> dict[str, dict[str, float]]:
        """Each worker's resources, as the client last heard (every few seconds)."""
        workers = self.client.scheduler_info().get("workers", {})
        return {address: dict(w.get("resources") or {}) for address, w in workers.items()}

    async def workers_now(self) -> dict[str, dict[str, float]]:
        """Each worker's resources as of the latest worker event: one scheduler call, however
        many waiting attempts ask."""
        if self._workers_lock is None:
            self._workers_lock = anyio.Lock()
        async with self._workers_lock:
            if self._workers is None or self._workers[0] != self._worker_events:
                seen = self._worker_events
                self._workers = (seen, await self.refresh())
            return self._workers[1]

    async def refresh(self) -> dict[str, dict[str, float]]:
        """Each worker's resources, asked of the scheduler now."""
        identity: dict[str, Any] = await self.client.scheduler.identity()
        workers = identity.get("workers", {})
        return {address: dict(w.get("resources") or {}) for address, w in workers.items()}


def _fits(wanted: Mapping[str, float], workers: Mapping[str, Mapping[str, float]]) -> bool:
    return any(
        all(offered.get(name, 0) >= amount for name, amount in wanted.items())
        for offered in workers.values()
    )


class _RemoteStream(_Stream):
    """One output stream of a remote run: the blocks that come in, copied to the run's log and
    split into lines as a local run's pipe (:class:`orchestrator.executors.local._Stream`)."""

    def __init__(self, name: str, log: _Log) -> None:
        super().__init__(-1, name, log)

    async def feed(self, data: bytes, sink: OutputSink) -> None:
        await self._take(data, len(data), sink)


class DaskExecutor:
    """Runs one sweep's jobs on the workers of a :class:`DaskCluster`. Used with ``async
    with``, it opens and closes that cluster (a sweep of its own, as ``run`` has); a daemon
    opens its one cluster itself and shares it among its sweeps' executors."""

    def __init__(self, cluster: DaskCluster, request: ResourceRequest) -> None:
        self.cluster = cluster
        self.request = request
        self._base = base_environment(os.environ)

    async def __aenter__(self) -> DaskExecutor:
        await self.cluster.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cluster.__aexit__(exc_type, exc, tb)

    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        if not job.argv:
            return Outcome(None, error="empty command: give run.container.command or args")
        settings = self.cluster.settings
        inits, init_error = inline_init(job.init, settings.init_max_bytes)
        if init_error is not None and settings.scratch:
            return Outcome(None, error=init_error)
        try:
            await anyio.to_thread.run_sync(_make_folders, job)
            if job.init and not settings.scratch:  # for workers that share the home
                home = job.layout.home
                await prepare_init(job.init, job.layout.artifacts, git_cache_dir(home))
        except ExecutorError as exc:
            return Outcome(None, error=str(exc))
        except OSError as exc:
            return Outcome(None, error=f"cannot prepare the run folder: {exc}")
        if stop.is_requested:
            return Outcome(None, stopped=True)
        offered = self.cluster.offered()
        wanted = dask_resources(self.request, {n for w in offered.values() for n in w})
        if wanted and not _fits(wanted, offered):
            offered = await self.cluster.refresh()
            if not _fits(wanted, offered):
                return Outcome(
                    None,
                    error=f"no_worker: no Dask worker offers {_shown(wanted)} "
                    "(start workers with --resources, see the docs)",
                )
        key = f"orchestrator-{job.run_id}-{uuid.uuid4().hex[:8]}"
        spec = self._spec(job, key)
        spec.update(init=inits, init_error=init_error)
        attempt = self.cluster.open(key)
        try:
            return await _Follow(self.cluster, attempt, job, sink, stop, started).run(spec, wanted)
        finally:
            self.cluster.close(attempt)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.cluster.clear_spent_claims()

    def _spec(self, job: Job, key: str) -> dict[str, Any]:
        """What the worker's task gets: the environment as what differs from ours (the worker
        adds its own), the folders as absolute paths."""
        env = {k: v for k, v in job.env.items() if self._base.get(k) != v}
        unset = [k for k in self._base if k not in job.env]
        return {
            "key": key,
            "topic": self.cluster.client.id,
            "argv": list(job.argv),
            "env": env,
            "unset": unset,
            "cwd": os.path.abspath(job.cwd),
            "run_dir": str(job.layout.run_dir),
            "grace": self.cluster.grace,
            "scratch": self.cluster.settings.scratch,
            "outputs_max_files": self.cluster.settings.outputs_max_files,
            "outputs_max_bytes": self.cluster.settings.outputs_max_bytes,
        }


def _start(tg: anyio.abc.TaskGroup, act: Callable[[], Coroutine[Any, Any, None]]) -> None:
    tg.start_soon(act)


def _make_folders(job: Job) -> None:
    os.makedirs(job.layout.run_dir, exist_ok=True)
    os.makedirs(job.layout.outputs, exist_ok=True)


class _Follow:
    """One attempt from its submission to its end."""

    def __init__(
        self,
        cluster: DaskCluster,
        attempt: _Attempt,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> None:
        self.cluster = cluster
        self.attempt = attempt
        self.job = job
        self.sink = sink
        self.stop = stop
        self.started = started
        layout = job.layout
        self.streams = {
            "stdout": _RemoteStream("stdout", _Log(lambda: layout.stdout)),
            "stderr": _RemoteStream("stderr", _Log(lambda: layout.stderr)),
        }
        #: The task's ``distributed.Future`` while it is held.
        self.future: Any = None
        self.terminated = False
        self.killed = False
        #: The worker was lost: the task is not waited for.
        self.lost = False
        #: Set once the task itself is over (a result, an error, cancelled).
        self.done = anyio.Event()
        #: What the attempt asks of a worker, and the wait for one that offers it again
        #: (None: not waiting) once the last one that did left.
        self.wanted: dict[str, float] = {}
        self.no_worker: anyio.CancelScope | None = None
        self.tg: anyio.abc.TaskGroup | None = None

    async def run(self, spec: dict[str, Any], wanted: dict[str, float]) -> Outcome:
        from orchestrator.executors.dask_worker import run_on_worker

        self.wanted = wanted
        client = self.cluster.client
        self.future = client.submit(
            run_on_worker,
            spec,
            key=self.attempt.key,
            pure=False,
            retries=0,
            resources=wanted or None,
        )
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                tg.start_soon(self._watch_future, self.future)
                forget = self.stop.on_request(lambda: _start(tg, self._on_stop))
                try:
                    outcome = await self._follow()
                    if not self.lost:  # the task returns right after its last message
                        with anyio.move_on_after(_END_WAIT_S):
                            await self.done.wait()
                finally:
                    forget()
                    tg.cancel_scope.cancel()
        finally:
            future, self.future = self.future, None
            future.release()  # the scheduler drops it: no re-execution, no recomputation
            with anyio.CancelScope(shield=True):
                for stream in self.streams.values():
                    with contextlib.suppress(OSError):
                        await stream.end(None)
        return outcome

    async def _follow(self) -> Outcome:
        async for message in self.attempt.receive:
            kind = message.get("kind")
            if kind == "out":
                stream = self.streams.get(str(message.get("stream")))
                if stream is not None:
                    await stream.feed(bytes(message["data"]), self.sink)
            elif kind == "started":
                self._stop_waiting()
                worker, host = str(message.get("worker")), message.get("host")
                self.job.placement = Placement(worker, str(host) if host else None)
                await self.started(None)  # its pid is the worker machine's, not ours
            elif kind == "end":
                for stream in self.streams.values():
                    await stream.end(self.sink)
                shipped = await self._outputs_back(message)
                return shipped or self._ended(message)
            elif kind == "recheck":
                await self._recheck()
            elif kind == "no-worker" and self.attempt.worker is None:
                return Outcome(None, error=str(message["error"]))
            elif kind == "start-error":
                number, text = int(message.get("errno") or 0), str(message.get("strerror"))
                return Outcome(None, error=_start_error(self.job.argv, OSError(number, text)))
            elif kind == "error":
                return Outcome(None, error=str(message.get("error")))
            elif kind == "lost":
                if self.attempt.worker is not None or message.get("claimed"):
                    return self._lost(str(message.get("worker")))
                # Not started there: Dask runs it elsewhere (a start we did not hear of is
                # claimed: that execution answers "duplicate", which is a loss).
            elif kind == "cancelled":
                return Outcome(None, stopped=True)
            elif kind == "duplicate":  # Dask ran it again: the first execution's worker is gone
                return self._lost(self.attempt.worker or "(unknown)")
        raise ExecutorError("the Dask executor lost track of a run")  # pragma: no cover

    def _ended(self, message: dict[str, Any]) -> Outcome:
        cpu_us, rss_kib = message.get("cpu_us"), message.get("rss_kib")
        return Outcome(
            int(message["exit_code"]),
            stopped=self.stop.is_requested,
            cpu_s=cpu_us / 1e6 if cpu_us is not None else None,
            max_rss=rss_kib * 1024 if rss_kib is not None else None,
        )

    async def _outputs_back(self, message: dict[str, Any]) -> Outcome | None:
        """A run in a scratch folder on its worker: write the ``outputs/`` its task's result
        holds into the run's folder here; the outcome when that cannot be (None: done, or
        nothing to ship)."""
        code = message.get("exit_code")
        error = message.get("outputs_error")
        if error is None and message.get("outputs"):
            try:
                result = await self.future
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            files = result.get("files") if isinstance(result, dict) else None
            if files is None:
                error = f"{OUTPUTS_LIMIT}: the Dask worker's result was lost ({result})"
            else:
                try:
                    await anyio.to_thread.run_sync(unpack_outputs, self.job.layout.outputs, files)
                except (OSError, ValueError) as exc:
                    error = f"{OUTPUTS_LIMIT}: cannot write outputs/ here: {exc}"
        if error is None:
            return None
        return Outcome(None, error=f"{error}; the command exited {code}")

    async def _recheck(self) -> None:
        """A worker left or came while this attempt waits for one: if none left offers what
        it asks, fail it after the cluster's ``no_worker_wait`` unless one comes (Dask would
        keep it in its ``no-worker`` state for ever, silently)."""
        if self.attempt.worker is not None:
            return
        with contextlib.suppress(Exception):  # the scheduler unreachable: its own error
            workers = await self.cluster.workers_now()
            if _fits(self.wanted, workers):
                self._stop_waiting()
            elif self.no_worker is None and self.tg is not None:
                self.no_worker = anyio.CancelScope()
                self.attempt.waiting = True
                self.tg.start_soon(self._no_worker_after, self.no_worker)

    def _stop_waiting(self) -> None:
        self.attempt.waiting = False
        if self.no_worker is not None:
            self.no_worker.cancel()
            self.no_worker = None

    async def _no_worker_after(self, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(self.cluster.settings.no_worker_wait)
            workers = await self.cluster.workers_now()
            if _fits(self.wanted, workers) or self.attempt.worker is not None:
                self._stop_waiting()
                return
            wanted = _shown(self.wanted)
            error = (
                f"no_worker: no Dask worker offers {wanted} any more"
                if wanted
                else "no_worker: no Dask worker is left"
            ) + f" (waited {self.cluster.settings.no_worker_wait:g} s for one)"
            self.attempt.put({"kind": "no-worker", "error": error})

    def _lost(self, worker: str) -> Outcome:
        self.lost = True
        return Outcome(
            None, error=f"{WORKER_LOST}: the Dask worker {worker} was lost while it held the run"
        )

    async def _watch_future(self, future: Any) -> None:
        """The task's own end: an error (a worker lost too often: ``KilledWorker``; the task
        could not be unpickled) or a cancellation ends the attempt if its messages did not."""
        await future._state.wait()  # not its result: fetching that is a round trip more
        self.done.set()
        if future.status == "finished":
            await anyio.sleep(_END_WAIT_S)  # its last message came before the result
            self.attempt.put({"kind": "error", "error": "dask_error: the task sent no end"})
            return
        result = future._state.exception
        name = type(result).__name__
        if name == "KilledWorker":
            worker = self.attempt.worker or "(killed too often)"
            self.attempt.put({"kind": "lost", "worker": worker, "claimed": True})
        elif future.cancelled() and self.stop.is_requested:
            self.attempt.put({"kind": "cancelled"})
        elif future.cancelled():  # not by us: the scheduler dropped our client's tasks
            error = "scheduler_lost: the Dask scheduler cancelled the run (a lost connection?)"
            self.attempt.put({"kind": "error", "error": error})
        else:
            self.attempt.put({"kind": "error", "error": f"dask_error: {name}: {result}"})

    async def _on_stop(self) -> None:
        """A stop request: SIGTERM to the command's group (SIGKILL after the grace, or now
        when the request says so); an attempt that has not started is cancelled."""
        client, future = self.cluster.client, self.future
        worker = self.attempt.worker
        if worker is None:
            if future is not None:
                await client.cancel([future])
            return
        if self.stop.kill_is_due and not self.killed:
            self.killed = True
            await self._signal(worker, "K")
            return
        if not self.terminated:
            self.terminated = True
            await self._signal(worker, "T")
            await anyio.sleep(self.stop.grace)
            if not self.killed:
                self.killed = True
                await self._signal(worker, "K")

    async def _signal(self, worker: str, word: str) -> None:
        """``T`` or ``K`` to the command's group, on its worker (gone: nothing to signal)."""
        from orchestrator.executors.dask_worker import signal_run

        with contextlib.suppress(Exception):
            await self.cluster.client.run(
                signal_run, self.attempt.key, word, workers=[worker], on_error="ignore"
            )
