"""TensorBoard event files, as an opt-in plugin (``--plugin tensorboard`` or
``ORCHESTRATOR_ENABLE_PLUGINS=tensorboard``; needs the ``tensorboard`` extra).

Each run's metrics are scalars in its own folder, ``HOME/tensorboard/SWEEP/INDEX``, at the
steps it reported, written as they stream. Each run that ends gets the HParams plugin's
session summaries (its params, and success or failure), and the sweep's folder gets the
experiment summary (every param and every metric name), so that
``tensorboard --logdir HOME/tensorboard/SWEEP`` shows the sweep's table and parallel
coordinates.

Written with tensorboardX's ``FileWriter`` and summary builders: tensorboardX needs only
numpy, protobuf and packaging, where the ``tensorboard`` package (needed only to *view*)
brings grpcio, werkzeug, markdown and its data server. The hooks are plain functions: the host
runs them in a worker thread, one at a time and in order, so no disk write happens on the
event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.plugin import (
    TERMINAL,
    MetricReported,
    PluginContext,
    RunCreated,
    RunState,
    RunStateChanged,
    SweepFinished,
    hookimpl,
)

__all__ = ["TensorBoardTracker", "hparam_value", "plugin", "sweep_logdir"]

ORCHESTRATOR_PLUGIN_API = 1
#: Off unless named: it writes files nobody asked for otherwise.
ORCHESTRATOR_PLUGIN_OPT_IN = True

_SESSION_END_TAG = "_hparams_/session_end_info"


def sweep_logdir(home: Path, sweep_id: str) -> Path:
    """The folder to point ``tensorboard --logdir`` at for one sweep."""
    return home / "tensorboard" / sweep_id


def hparam_value(value: Any) -> str | bool | float:
    """What the HParams plugin can show: strings, booleans and numbers; anything else as text."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return repr(value)


@dataclass
class _Sweep:
    logdir: Path
    writers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    #: Every param and metric name seen, in first-seen order (dicts as ordered sets).
    param_names: dict[str, Any] = field(default_factory=dict)
    metric_names: dict[str, None] = field(default_factory=dict)


def _session_end(state: RunState) -> Any:
    """The HParams session-end summary with the run's status (tensorboardX's helper always
    says success)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    status = "STATUS_SUCCESS" if state is RunState.SUCCEEDED else "STATUS_FAILURE"
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)))
    data = SummaryMetadata.PluginData(plugin_name="hparams", content=content.SerializeToString())
    metadata = SummaryMetadata(plugin_data=data)
    return Summary(value=[Summary.Value(tag=_SESSION_END_TAG, metadata=metadata)])


class TensorBoardTracker:
    """The hooks; per-sweep state lives in ``ctx.per_sweep``."""

    ORCHESTRATOR_PLUGIN_API = 1
    ORCHESTRATOR_PLUGIN_OPT_IN = True

    def _sweep(self, ctx: PluginContext) -> _Sweep:
        return ctx.per_sweep(self, lambda: _Sweep(sweep_logdir(ctx.home, ctx.sweep_id)))

    def _writer(self, sweep: _Sweep, run_id: str, ctx: PluginContext) -> Any:
        writer = sweep.writers.get(run_id)
        if writer is None:
            from tensorboardX import FileWriter

            if run_id not in sweep.indexes:  # made by an earlier invocation (resume)
                view = ctx.run(run_id)
                if view is not None:
                    self._remember(sweep, run_id, view.index, view.params)
            folder = sweep.logdir / str(sweep.indexes.get(run_id, run_id))
            writer = sweep.writers[run_id] = FileWriter(str(folder))
        return writer

    @staticmethod
    def _remember(sweep: _Sweep, run_id: str, index: int, params: dict[str, Any]) -> None:
        sweep.indexes[run_id] = index
        sweep.params[run_id] = {k: hparam_value(v) for k, v in params.items()}
        for name, value in sweep.params[run_id].items():
            sweep.param_names.setdefault(name, value)

    @hookimpl
    def on_run_created(self, event: RunCreated, ctx: PluginContext) -> None:
        self._remember(self._sweep(ctx), event.run_id, event.index, event.params)

    @hookimpl
    def on_metric(self, event: MetricReported, ctx: PluginContext) -> None:
        from tensorboardX import summary

        sweep = self._sweep(ctx)
        writer = self._writer(sweep, event.run_id, ctx)
        step = event.step
        if step is None:
            step = sweep.counters.get(event.run_id, 0)
            sweep.counters[event.run_id] = step + 1
        for name, value in event.values.items():
            sweep.metric_names.setdefault(name)
            writer.add_summary(summary.scalar(name, float(value)), step, event.ts)
        writer.flush()  # live in TensorBoard, not after flush_secs

    @hookimpl
    def on_run_state_changed(self, event: RunStateChanged, ctx: PluginContext) -> None:
        if event.state not in TERMINAL:
            return
        from tensorboardX import summary

        sweep = self._sweep(ctx)
        writer = self._writer(sweep, event.run_id, ctx)
        _, start, _ = summary.hparams(sweep.params.get(event.run_id, {}), {})
        writer.add_summary(start, None, event.ts)
        writer.add_summary(_session_end(event.state), None, event.ts)
        writer.close()
        del sweep.writers[event.run_id]

    @hookimpl
    def on_sweep_finished(self, event: SweepFinished, ctx: PluginContext) -> None:
        """The experiment summary, in the sweep's own folder: the table's columns."""
        from tensorboardX import FileWriter, summary

        sweep = self._sweep(ctx)
        for writer in sweep.writers.values():  # runs that never ended (a crash, a stop)
            writer.close()
        sweep.writers.clear()
        metrics = dict.fromkeys(sweep.metric_names, 0.0)
        experiment, _, _ = summary.hparams(dict(sweep.param_names), metrics)
        writer = FileWriter(str(sweep.logdir))
        writer.add_summary(experiment, None, event.ts)
        writer.close()


plugin = TensorBoardTracker()
