"""A run's output on its way in: stderr tail, metric lines, ``LogLine`` events; and the logs a
cache hit copies from the run it reuses.

This is the hot path of log capture: a line that is not a metric report and that nobody
subscribed to as a ``LogLine`` costs one prefix check.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import msgspec

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import LogLine, MetricReported
from orchestrator.engine.records import RunRecord
from orchestrator.hooks import UseCached
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

__all__ = ["RunOutput", "adopt_cached", "copy_logs"]


class _MetricLine(msgspec.Struct):
    metrics: dict[str, float]
    step: int | None = None


_decode_metrics = msgspec.json.Decoder(_MetricLine).decode


class RunOutput:
    """The :class:`~orchestrator.executors.base.OutputSink` of one run attempt."""

    def __init__(
        self, run: RunRecord, bus: EventBus, journal: Journal, outputs: frozenset[str]
    ) -> None:
        self.run = run
        self.bus = bus
        self.journal = journal
        #: Declared outputs: a metric of the same name sets the output too.
        self.outputs = outputs
        self.want_lines = bus.wants(LogLine)

    async def line(self, stream: str, text: str) -> None:
        if stream == "stderr":
            self.run.stderr_tail.append(text)
        elif text.startswith("{") and '"metrics"' in text:
            await self._metric_line(text)
        if self.want_lines:
            run = self.run
            await self.bus.emit(LogLine, run_id=run.id, index=run.index, stream=stream, line=text)

    async def _metric_line(self, text: str) -> None:
        try:
            record = _decode_metrics(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        if not record.metrics:
            return
        run = self.run
        run.metrics.update(record.metrics)
        for name, value in record.metrics.items():
            if name in self.outputs:
                run.outputs[name] = value
        self.journal.add_metrics(run.id, record.step, record.metrics)
        await self.bus.emit(
            MetricReported, run_id=run.id, index=run.index, step=record.step, values=record.metrics
        )


def copy_logs(source: RunLayout, target: RunLayout) -> None:
    """Give a cache hit the logs of the run it reuses."""
    os.makedirs(target.outputs, exist_ok=True)
    for src, dst in ((source.stdout, target.stdout), (source.stderr, target.stderr)):
        if src.exists():
            shutil.copyfile(src, dst)
        else:
            dst.touch()


async def adopt_cached(run: RunRecord, hit: UseCached, journal: Journal, home: Path) -> None:
    """Give ``run`` the outputs, metrics and logs of the earlier run a cache hit reuses (the
    caller then ends it ``succeeded``)."""
    await journal.flush()
    source = RunLayout(home, hit.source_run_id)
    await anyio.to_thread.run_sync(copy_logs, source, RunLayout(home, run.id))
    journal.copy_metrics(hit.source_run_id, run.id)
    await journal.flush()
    run.metrics = journal.last_metrics([hit.source_run_id]).get(hit.source_run_id, {})
    run.outputs = dict(hit.outputs)
    for name, value in run.outputs.items():
        journal.set_output(run.id, name, value)
    run.cached_from = hit.source_run_id
