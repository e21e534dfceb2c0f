"""The user's tuner component, run as a process between two iterations of an iterative search.

Polyaxon runs ``matrix.tuner.hubRef`` as an operation with the params ``matrix`` (the matrix as
a dict), ``iteration``, and, through a join over the sweep's succeeded runs, ``configs`` and
``metrics``; the tuner answers with its output ``suggestions`` (``RunClient.log_outputs``).
Here the component is rendered like any other (``compile_plan``: argv, env, working folder)
and started as a process in its own session; it answers with
``orchestrator.tracking.log_outputs(suggestions=[...])``, one JSON line on its stdout.

Everything it leaves goes under ``work_dir/iteration-N/``: ``inputs.json`` (every input, also
named by ``$ORCHESTRATOR_TUNER_INPUTS``: a long history overflows a command line),
``stdout.log``/``stderr.log`` (capped), ``outputs/`` (``globals.run_outputs_path``) and
``suggestions.json``, what it answered (a resumed search reads it back).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, Process

from orchestrator.exceptions import SearchError, SpecError
from orchestrator.spec import models as m
from orchestrator.spec.load import LoadedSpec, load_text
from orchestrator.spec.resolve import Plan, RunSpec, compile_plan

__all__ = ["INPUTS_ENV", "TunerRequest", "TunerRunner", "tuner_component"]

#: Seconds a tuner may run before it is stopped and the search fails.
DEFAULT_TIMEOUT_S = 600.0
#: Seconds between SIGTERM and SIGKILL when a tuner is stopped.
KILL_GRACE_S = 3.0
#: Longest stdout line read for outputs (a longer ``{"outputs": ...}`` line is an error).
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Bytes of each stream kept in ``stdout.log`` / ``stderr.log``.
MAX_LOG_BYTES = 8 * 1024 * 1024
#: The environment variable naming the tuner's ``inputs.json``.
INPUTS_ENV = "ORCHESTRATOR_TUNER_INPUTS"
#: Where the tuner's paths go in ``globals`` (``run_paths`` of the store, for one folder).
_GLOBAL_PATHS = ("context_path", "run_artifacts_path")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class TunerRequest:
    """What a tuner is told: Polyaxon's params, plus ``outputs`` (each config's outputs)."""

    #: The iteration the suggestions are for (0: the first, before any run).
    iteration: int
    matrix: dict[str, Any]
    #: The params of each succeeded run so far, in run order (Polyaxon joins ``inputs``).
    configs: list[dict[str, Any]]
    #: The last value each of them reported of each metric.
    metrics: list[dict[str, float]]
    outputs: list[dict[str, Any]]

    def values(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix,
            "iteration": self.iteration,
            "configs": self.configs,
            "metrics": self.metrics,
            "outputs": self.outputs,
        }


def tuner_component(ref: str, *, source: str, base_dir: Path) -> tuple[m.Component, str]:
    """The component ``tuner.hubRef`` names, and where it was found.

    A hub name (``name``, ``owner/name:tag``) resolves like any hubRef, in the local hub folder
    ``$ORCHESTRATOR_HUB``. A value ending in ``.yaml``/``.yml`` is a component file relative to
    the polyaxonfile (no hub name has a dot in it, and Polyaxon's schema takes any string, so
    the file stays valid for Polyaxon)."""
    key = "pathRef" if ref.endswith((".yaml", ".yml")) else "hubRef"
    text = json.dumps({"version": 1.1, "kind": "operation", key: ref})
    try:
        loaded = load_text(text, source, base_dir)
    except SpecError as exc:
        if exc.file == source or exc.file is None:
            exc.file, exc.field = source, "matrix.tuner.hubRef"
        raise
    return loaded.component, loaded.component_source


class TunerRunner:
    """Runs one tuner component, iteration after iteration, in ``work_dir``."""

    def __init__(
        self,
        component: m.Component,
        *,
        work_dir: Path,
        base_dir: Path,
        component_source: str = "tuner",
        params: Mapping[str, m.Param] | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``params``: the file's ``tuner.params`` (they win over the inputs given here, as in
        Polyaxon); ``environ``: the environment it starts from (the engine's base environment;
        ``os.environ`` by default); ``base_dir``: its working folder unless it sets
        ``workingDir`` (the polyaxonfile's folder, like a run's)."""
        self.component = component
        self.component_source = component_source
        self.work_dir = work_dir
        self.base_dir = base_dir
        self.params = dict(params or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.timeout = timeout
        self.name = component.name or Path(component_source).stem
        run = component.run
        if isinstance(run, m.Job | m.Service) and run.init:
            raise SpecError(
                "init steps are not supported in a tuner component",
                field="run.init",
                file=component_source,
            )

    @classmethod
    def for_matrix(
        cls,
        matrix: m.Iterative,
        *,
        source: str,
        base_dir: Path,
        work_dir: Path,
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> TunerRunner:
        """The runner of ``matrix.tuner``; SpecError (one line) when there is none, it cannot
        be found, or it cannot take the inputs of a first iteration."""
        if matrix.tuner is None:
            raise SpecError(
                "required by iterative: the component that makes the suggestions",
                field="matrix.tuner",
                file=source,
            )
        component, where = tuner_component(matrix.tuner.hub_ref, source=source, base_dir=base_dir)
        runner = cls(
            component,
            work_dir=work_dir,
            base_dir=base_dir,
            component_source=where,
            params=matrix.tuner.params,
            environ=environ,
            timeout=timeout,
        )
        first = TunerRequest(0, msgspec.to_builtins(matrix), [], [], [])
        runner.render(first, work_dir / "check")  # its errors before anything runs
        return runner

    # ------------------------------------------------------------------ render
    def render(self, request: TunerRequest, folder: Path) -> RunSpec:
        """The tuner's run for ``request``: inputs it declares get their value, the others are
        context-only (templates may still name them); SpecError when it does not fit."""
        declared = {io.name for io in self.component.inputs or []}
        params: dict[str, m.Param] = {
            name: m.Param(value=value)
            if name in declared
            else m.Param(value=value, context_only=True)
            for name, value in request.values().items()
        }
        params.update(self.params)
        operation = m.Operation(
            version=1.1, name=self.name, component=self.component, params=params
        )
        spec = LoadedSpec(
            self.component_source, operation, self.component, self.component_source, self.base_dir
        )
        plan: Plan = compile_plan(spec, paths=lambda _uuid: _paths(folder))
        return plan.render(0, {}, uuid.uuid4().hex)

    # ------------------------------------------------------------------ run
    async def run(self, request: TunerRequest) -> dict[str, Any]:
        """Run the tuner for ``request.iteration`` and return the outputs it printed (its
        answer is ``suggestions``); SearchError, one line, when it fails or hangs."""
        folder = self.work_dir / f"iteration-{request.iteration}"
        where = f"tuner {self.name!r} (iteration {request.iteration})"
        try:
            spec = self.render(request, folder)
        except SpecError as exc:
            raise SearchError(f"{where}: {exc}") from None
        try:
            await anyio.to_thread.run_sync(_prepare, folder, request)
        except OSError as exc:
            raise SearchError(f"{where}: cannot write {folder}: {exc.strerror}") from None
        env = {"PYTHONUNBUFFERED": "1", **self.environ, **spec.env}
        env[INPUTS_ENV] = str(folder / "inputs.json")
        env["ORCHESTRATOR_RUN_DIR"] = str(folder)
        env["ORCHESTRATOR_OUTPUTS_PATH"] = str(folder / "outputs")
        cwd = Path(spec.working_dir) if spec.working_dir else self.base_dir
        outputs = await self._execute(spec.argv, env, cwd, folder, where)
        if "suggestions" in outputs:
            answer = outputs["suggestions"]
            await anyio.to_thread.run_sync(_write_json, folder / "suggestions.json", answer)
        return outputs

    def recorded(self, iteration: int) -> Any:
        """What the tuner answered for ``iteration`` in an earlier process (None: unknown)."""
        path = self.work_dir / f"iteration-{iteration}" / "suggestions.json"
        try:
            return json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None

    async def _execute(
        self, argv: list[str], env: dict[str, str], cwd: Path, folder: Path, where: str
    ) -> dict[str, Any]:
        if not argv:
            raise SearchError(f"{where}: its container has no command")
        scan = _OutputsScan(folder / "stdout.log")
        tail = _Tail(folder / "stderr.log")
        try:
            await anyio.to_thread.run_sync(lambda: cwd.mkdir(parents=True, exist_ok=True))
            process = await anyio.open_process(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SearchError(f"{where}: cannot start {argv[0]!r}: {reason}") from None
        try:
            with anyio.move_on_after(self.timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    assert process.stdout is not None and process.stderr is not None
                    tg.start_soon(_pump, process.stdout, scan.feed)
                    tg.start_soon(_pump, process.stderr, tail.feed)
                    await process.wait()
                    _signal_group(process.pid, signal.SIGKILL)  # what it left holds the pipes
        finally:
            scan.close()
            tail.close()
            with anyio.CancelScope(shield=True):
                if process.returncode is None:  # timed out, or the search was cancelled
                    await _stop(process)
                await process.aclose()  # its pipes
        if deadline.cancelled_caught:
            raise SearchError(f"{where}: timed out after {self.timeout:g}s and was stopped")
        code = process.returncode
        if code != 0:
            how = (
                f"killed by signal {-code}"
                if code is not None and code < 0
                else f"exit status {code}"
            )
            last = tail.last_line()
            raise SearchError(f"{where}: failed ({how})" + (f": {last}" if last else ""))
        if scan.problem:
            raise SearchError(f"{where}: {scan.problem}")
        return scan.outputs


def _paths(folder: Path) -> dict[str, str]:
    """``globals.*`` paths of a tuner run: its iteration folder."""
    return {
        **dict.fromkeys(_GLOBAL_PATHS, str(folder)),
        "artifacts_path": str(folder / "artifacts"),
        "store_path": str(folder / "artifacts"),
        "run_outputs_path": str(folder / "outputs"),
        "run_relative_outputs_path": "outputs",
    }


def _prepare(folder: Path, request: TunerRequest) -> None:
    """A clean iteration folder (a rerun after a crash leaves no stale answer or log) and its
    ``inputs.json``."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "outputs").mkdir(exist_ok=True)
    for name in ("suggestions.json", "stdout.log", "stderr.log"):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    _write_json(folder / "inputs.json", request.values())


def _write_json(path: Path, value: Any) -> None:
    """Write ``value`` whole or not at all (a crash never leaves half a file to read back)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(msgspec.json.encode(value))
    os.replace(temporary, path)


async def _pump(stream: ByteReceiveStream, sink: Any) -> None:
    async for chunk in stream:
        sink(chunk)


def _signal_group(pgid: int, signum: int) -> None:
    """Signal the tuner's session (its own process group: ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _stop(process: Process) -> None:
    """SIGTERM to the whole group, SIGKILL after a grace period; then reap it."""
    _signal_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(KILL_GRACE_S):
        await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


class _Log:
    """A stream's log file, created at its first byte (as a run's are) and capped at
    MAX_LOG_BYTES; one that cannot be written is given up (it helps a user debug the tuner,
    it never fails it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None
        self.left = MAX_LOG_BYTES

    def write(self, data: bytes) -> None:
        if self.left <= 0 or not data:
            return
        try:
            if self.file is None:
                self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self.file.write(data[: self.left])
        except OSError:
            self.close()
            self.left = 0
            return
        self.left -= len(data)

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None


class _OutputsScan:
    """Reads ``{"outputs": {...}}`` lines off stdout as they come, merging them key by key
    (a later line wins), without keeping the rest: memory stays under one line."""

    def __init__(self, log: Path) -> None:
        self.log = _Log(log)
        self.outputs: dict[str, Any] = {}
        self.problem: str | None = None
        self._line = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> None:
        self.log.write(data)
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                self._line += piece
                if len(self._line) > MAX_LINE_BYTES:
                    if self._line.lstrip().startswith(b'{"outputs"'):
                        self.problem = f"printed an outputs line over {MAX_LINE_BYTES:,} bytes"
                    self._line.clear()
                    self._skipping = True
            if end < 0:
                return
            self._finish_line()
            start = end + 1

    def _finish_line(self) -> None:
        line, self._skipping = bytes(self._line).strip(), False
        self._line.clear()
        if not line.startswith(b"{") or b'"outputs"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if isinstance(record, dict) and isinstance(record.get("outputs"), dict):
            self.outputs.update(record["outputs"])

    def close(self) -> None:
        if self._line and not self._skipping:
            self._finish_line()
        self.log.close()


class _Tail:
    """The last lines of stderr (for the error message) and its capped log."""

    def __init__(self, log: Path) -> None:
        self.log = _Log(log)
        self.lines: deque[bytes] = deque(maxlen=8)
        self._partial = b""

    def feed(self, data: bytes) -> None:
        self.log.write(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        self.lines.extend(line[-4096:] for line in lines)

    def close(self) -> None:
        if self._partial:
            self.lines.append(self._partial)
            self._partial = b""
        self.log.close()

    def last_line(self) -> str:
        """The last line it printed that says something, on one line."""
        for line in reversed(self.lines):
            text = " ".join(line.decode(errors="replace").split())
            if text:
                return text
        return ""
