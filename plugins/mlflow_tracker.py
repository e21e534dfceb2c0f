"""MLflow tracking, as an opt-in plugin (``--plugin mlflow`` or
``ORCHESTRATOR_ENABLE_PLUGINS=mlflow``; needs the ``mlflow`` extra).

One MLflow run per sweep (the parent) and one per configuration, nested under it
(``mlflow.parentRunId``): params, metrics with their steps as they stream, and tags for each
run's state, reason, exit code, outputs and where it came from (sweep id, home, spec, argv;
``orchestrator show SWEEP:INDEX`` has the full provenance). The store is
``MLFLOW_TRACKING_URI`` when set, else ``HOME/mlruns`` (a file store: one per home, like the
journal, whatever folder the sweep is started from). The experiment is
``MLFLOW_EXPERIMENT_NAME``, else the sweep's name, else ``orchestrator``.

Every MLflow call happens in one worker thread per sweep, fed by a queue: hooks only enqueue
(never a network call on the event loop), and what piles up while MLflow is slow is sent
together (``log_batch``). A failure is raised from the next hook, so the host reports it and
switches the tracker off; the sweep goes on.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.plugin import (
    TERMINAL,
    MetricReported,
    PluginContext,
    RunCreated,
    RunState,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    hookimpl,
)

__all__ = ["MlflowTracker", "mlflow_status", "plugin", "tracking_uri"]

ORCHESTRATOR_PLUGIN_API = 1
#: Off unless named: it writes to a store of the user's.
ORCHESTRATOR_PLUGIN_OPT_IN = True

#: Tag names (the ``orchestrator.`` prefix keeps them apart from MLflow's own).
SWEEP_TAG = "orchestrator.sweep_id"
RUN_TAG = "orchestrator.run_id"
KIND_TAG = "orchestrator.kind"
STATE_TAG = "orchestrator.state"
#: MLflow limits: a param value, a tag value; items per log_batch.
_MAX_PARAM, _MAX_TAG, _MAX_BATCH = 6000, 8000, 1000


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI``, else a file store under the orchestrator home."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (home / "mlruns").resolve().as_uri()


def mlflow_status(state: RunState) -> str:
    """The MLflow run status of a final orchestrator state."""
    if state is RunState.SUCCEEDED:
        return "FINISHED"
    return "FAILED" if state is RunState.FAILED else "KILLED"


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Sweep:
    """One sweep's worker: its queue, thread, MLflow ids and first failure."""

    home: Path
    spec_source: str
    inbox: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None
    error: BaseException | None = None
    parent: str | None = None
    experiment: str | None = None
    #: Whether the parent existed already (a resumed sweep): look runs up before creating.
    resumed: bool = False
    children: dict[str, str] = field(default_factory=dict)
    #: Where this invocation runs (:func:`provenance_tags`): on the parent and every run made.
    provenance: dict[str, str] = field(default_factory=dict)
    #: A run's reports without a step get 0, 1, 2... per run.
    counters: dict[str, int] = field(default_factory=dict)


_STOP = object()

#: Provenance fields (as ``ctx.provenance()`` gives them) and the tags they become.
_PROVENANCE_TAGS = {
    "git_commit": "orchestrator.git.commit",
    "git_tree": "orchestrator.git.tree",
    "git_dirty": "orchestrator.git.dirty",
    "diff_hash": "orchestrator.git.diff_hash",
    "python": "orchestrator.python",
    "python_version": "orchestrator.python_version",
    "packages_hash": "orchestrator.packages_hash",
    "host": "orchestrator.host",
    "user": "orchestrator.user",
    "platform": "orchestrator.platform",
    "cwd": "orchestrator.cwd",
}


def provenance_tags(record: dict[str, Any] | None) -> dict[str, str]:
    """The tags that tell which code, interpreter, packages and machine a run ran with; the
    commit also as MLflow's own ``mlflow.source.git.commit``, which its UI shows. The large
    parts (diff, package list, environment) go by hash: ``show`` prints them in full."""
    if not record:
        return {}
    tags = {
        tag: str(record[name]).lower() if isinstance(record[name], bool) else str(record[name])
        for name, tag in _PROVENANCE_TAGS.items()
        if record.get(name) is not None
    }
    if "orchestrator.git.commit" in tags:
        tags["mlflow.source.git.commit"] = tags["orchestrator.git.commit"]
    return tags


class _Worker:
    """What runs in the sweep's thread: MLflow calls, in event order."""

    def __init__(self, sweep: _Sweep, sweep_id: str) -> None:
        from mlflow import MlflowClient

        uri = tracking_uri(sweep.home)
        if uri.startswith("file:"):
            # MLflow 3 refuses a file store unless asked for; the default needs no database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.sweep = sweep
        self.sweep_id = sweep_id

    def run(self) -> None:
        """Handle events until the sweep ends; keep the first failure, then only drain."""
        while True:
            batch = [self.sweep.inbox.get()]
            while True:
                try:
                    batch.append(self.sweep.inbox.get_nowait())
                except queue.Empty:
                    break
            if self.sweep.error is None:
                try:
                    self.handle([e for e in batch if e is not _STOP])
                except Exception as exc:  # reported by the next hook, through the host
                    self.sweep.error = exc
            if any(e is _STOP for e in batch):
                return

    def handle(self, events: list[Any]) -> None:
        """Consecutive metrics of a run go out together; the rest one by one."""
        pending: dict[str, list[Any]] = {}
        for event in events:
            if isinstance(event, MetricReported):
                pending.setdefault(event.run_id, []).extend(self.metrics(event))
                continue
            self.flush(pending)
            if isinstance(event, SweepStarted):
                self.started(event)
            elif isinstance(event, RunCreated):
                self.created(event)
            elif isinstance(event, RunStateChanged):
                self.changed(event)
            elif isinstance(event, SweepFinished):
                self.finished(event)
        self.flush(pending)

    def flush(self, pending: dict[str, list[Any]]) -> None:
        for run_id, metrics in pending.items():
            child = self.child(run_id)
            for start in range(0, len(metrics), _MAX_BATCH):
                self.client.log_batch(child, metrics=metrics[start : start + _MAX_BATCH])
        pending.clear()

    def metrics(self, event: MetricReported) -> list[Any]:
        from mlflow.entities import Metric

        step = event.step
        if step is None:
            step = self.sweep.counters.get(event.run_id, 0)
            self.sweep.counters[event.run_id] = step + 1
        ms = int(event.ts * 1000)
        return [Metric(key, float(value), ms, step) for key, value in event.values.items()]

    def tags(self, run: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _text(v, _MAX_TAG)) for k, v in tags.items() if v is not None]
        self.client.log_batch(run, tags=items)

    def started(self, event: SweepStarted) -> None:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or event.name or "orchestrator"
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                self.sweep.experiment = self.client.create_experiment(name)
            except Exception:  # another process made it meanwhile
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found is not None:
            self.sweep.experiment = found.experiment_id
        parent = self.lookup(f"tags.`{KIND_TAG}` = 'sweep'")
        self.sweep.resumed = parent is not None
        if parent is None:
            tags = {
                "mlflow.runName": event.name or self.sweep_id,
                SWEEP_TAG: self.sweep_id,
                KIND_TAG: "sweep",
                "orchestrator.home": str(self.sweep.home),
                "orchestrator.spec": self.sweep.spec_source,
                "orchestrator.total": str(event.total),
                "orchestrator.concurrency": str(event.concurrency),
                **self.sweep.provenance,
            }
            parent = self.client.create_run(str(self.sweep.experiment), tags=tags).info.run_id
        else:
            self.client.update_run(parent, status="RUNNING")
            self.tags(parent, self.sweep.provenance)  # this invocation's: the code may differ
        self.sweep.parent = parent

    def lookup(self, clause: str) -> str | None:
        """The id of this sweep's MLflow run matching ``clause``, if there is one."""
        query = f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and {clause}"
        runs = self.client.search_runs([str(self.sweep.experiment)], query, max_results=1)
        return runs[0].info.run_id if runs else None

    def child(self, run_id: str, index: int | None = None) -> str:
        """The MLflow run of orchestrator run ``run_id``: known, found (resumed) or made."""
        known = self.sweep.children.get(run_id)
        if known is None and self.sweep.resumed:
            known = self.lookup(f"tags.`{RUN_TAG}` = '{run_id}'")
            if known is not None and self.sweep.provenance:
                self.tags(known, self.sweep.provenance)  # it runs again, with this code
        if known is None:
            tags = {
                "mlflow.parentRunId": str(self.sweep.parent),
                "mlflow.runName": f"{self.sweep_id}:{index}" if index is not None else run_id,
                SWEEP_TAG: self.sweep_id,
                RUN_TAG: run_id,
                KIND_TAG: "run",
                **self.sweep.provenance,
            }
            if index is not None:
                tags["orchestrator.index"] = str(index)
            created = self.client.create_run(str(self.sweep.experiment), tags=tags)
            known = created.info.run_id
        self.sweep.children[run_id] = known
        return known

    def created(self, event: RunCreated) -> None:
        from mlflow.entities import Param

        child = self.child(event.run_id, event.index)
        params = [Param(k, _text(v, _MAX_PARAM)) for k, v in event.params.items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(child, params=params[start : start + 100])
        tags = {"orchestrator.argv": " ".join(event.argv), STATE_TAG: "created"}
        if event.place:
            tags["orchestrator.place"] = repr(event.place)
        self.tags(child, tags)

    def changed(self, event: RunStateChanged) -> None:
        child = self.child(event.run_id, event.index)
        tags: dict[str, Any] = {STATE_TAG: event.state.value}
        if event.reason is not None:
            tags["orchestrator.reason"] = event.reason
        if event.exit_code is not None:
            tags["orchestrator.exit_code"] = str(event.exit_code)
        for name, value in (event.outputs or {}).items():
            tags[f"orchestrator.output.{name}"] = value
        self.tags(child, tags)
        if event.state in TERMINAL:
            self.client.set_terminated(child, status=mlflow_status(event.state))

    def finished(self, event: SweepFinished) -> None:
        if self.sweep.parent is None:
            return
        tags = {STATE_TAG: event.state.value, "orchestrator.reason": event.reason}
        tags.update({f"orchestrator.count.{k}": str(n) for k, n in event.counts.items()})
        self.tags(self.sweep.parent, tags)
        status = {"succeeded": "FINISHED", "failed": "FAILED"}.get(event.state.value, "KILLED")
        self.client.set_terminated(self.sweep.parent, status=status)


class MlflowTracker:
    """The hooks: each hands its event to the sweep's worker thread, none waits for MLflow
    except the last (so that a finished sweep's runs are in the store)."""

    ORCHESTRATOR_PLUGIN_API = 1
    ORCHESTRATOR_PLUGIN_OPT_IN = True

    def _sweep(self, ctx: PluginContext) -> _Sweep:
        sweep = ctx.per_sweep(self, lambda: _Sweep(ctx.home, ctx.spec.source))
        if sweep.error is not None:
            sweep.inbox.put(_STOP)  # the host switches the tracker off: end its thread
            raise RuntimeError(f"MLflow: {type(sweep.error).__name__}: {sweep.error}")
        return sweep

    def _send(self, event: Any, ctx: PluginContext) -> None:
        self._sweep(ctx).inbox.put(event)

    @hookimpl
    async def on_sweep_started(self, event: SweepStarted, ctx: PluginContext) -> None:
        sweep = self._sweep(ctx)
        sweep.provenance = provenance_tags(await ctx.provenance())
        # Importing mlflow takes a second or more: in a thread, not on the loop.
        worker = await anyio.to_thread.run_sync(_Worker, sweep, ctx.sweep_id)
        sweep.thread = threading.Thread(target=worker.run, name="mlflow-tracker", daemon=True)
        sweep.thread.start()
        sweep.inbox.put(event)

    @hookimpl
    async def on_run_created(self, event: RunCreated, ctx: PluginContext) -> None:
        self._send(event, ctx)

    @hookimpl
    async def on_run_state_changed(self, event: RunStateChanged, ctx: PluginContext) -> None:
        self._send(event, ctx)

    @hookimpl
    async def on_metric(self, event: MetricReported, ctx: PluginContext) -> None:
        self._send(event, ctx)

    @hookimpl
    async def on_sweep_finished(self, event: SweepFinished, ctx: PluginContext) -> None:
        sweep = self._sweep(ctx)
        sweep.inbox.put(event)
        sweep.inbox.put(_STOP)
        if sweep.thread is not None:
            await anyio.to_thread.run_sync(sweep.thread.join, abandon_on_cancel=True)
        self._sweep(ctx)  # raises the worker's failure, if any


plugin = MlflowTracker()
