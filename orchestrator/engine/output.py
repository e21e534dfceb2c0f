"""A run's output on its way in: stderr tail, metric lines, ``LogLine`` events; and the logs a
cache hit copies from the run it reuses.

This is the hot path of log capture, taken a chunk at a time: when nobody subscribed to
``LogLine``, a chunk of stdout costs a scan for lines starting with ``{`` (only those can be
metric reports, and only those are decoded) and a chunk of stderr the decoding of its last
lines (the tail a failure prints); no line costs an ``await`` or a Python loop turn.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import msgspec

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import LogLine, MetricReported
from orchestrator.engine.records import RunRecord
from orchestrator.engine.transitions import final_state_of
from orchestrator.executors.base import split_lines
from orchestrator.executors.supervisor import make_folder
from orchestrator.hooks import UseCached
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

__all__ = ["RunOutput", "adopt_cached", "copy_logs", "logged_metrics"]


class _MetricLine(msgspec.Struct):
    metrics: dict[str, float]
    step: int | None = None


class _OutputsLine(msgspec.Struct):
    outputs: dict[str, Any]


_decode_metrics = msgspec.json.Decoder(_MetricLine).decode
_decode_outputs = msgspec.json.Decoder(_OutputsLine).decode


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
        elif text.startswith("{"):
            await self._report_line(text)
        if self.want_lines:
            run = self.run
            await self.bus.emit(LogLine, run_id=run.id, index=run.index, stream=stream, line=text)

    async def chunk(self, stream: str, data: bytes | bytearray, start: int, end: int) -> None:
        if self.want_lines:
            for text in split_lines(data, start, end):
                await self.line(stream, text)
        elif stream == "stderr":
            self._stderr_tail(data, start, end)
        elif data.find(b"{", start, end) >= 0:  # memchr: most chunks stop here
            await self._metric_lines(data, start, end)

    def _stderr_tail(self, data: bytes | bytearray, start: int, end: int) -> None:
        """Keep the chunk's last lines: only as many as the tail holds are decoded."""
        tail = self.run.stderr_tail
        begin, count = end, 0
        while tail.maxlen is None or count < tail.maxlen:
            cut = data.rfind(b"\n", start, begin)
            if cut < 0:
                begin = start
                break
            begin, count = cut, count + 1
        else:
            begin += 1
        tail.extend(split_lines(data, begin, end))

    async def _metric_lines(self, data: bytes | bytearray, start: int, end: int) -> None:
        """The metric reports among stdout's lines: lines starting with ``{``, found by a scan."""
        if data.startswith(b"{", start, end):
            at = start
        else:
            at = data.find(b"\n{", start, end) + 1
            if not at:
                return
        while True:
            stop = data.find(b"\n", at, end)
            if stop < 0:
                stop = end
            await self._report_line(data[at:stop].decode(errors="replace"))
            at = data.find(b"\n{", stop, end) + 1
            if not at:
                return

    async def _report_line(self, text: str) -> None:
        """A line starting with ``{``: a metrics report (``log_metrics``), an outputs report
        (``log_outputs``), or anything else the run printed."""
        if '"metrics"' in text:
            await self._metric_line(text)
        elif '"outputs"' in text:
            self._outputs_line(text)

    def _outputs_line(self, text: str) -> None:
        """``{"outputs": {...}}``: the run's outputs, key by key, later lines winning (as
        Polyaxon's ``log_outputs``); journaled with the run's end, like outputs set by metrics."""
        try:
            record = _decode_outputs(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        self.run.outputs.update(record.outputs)

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


def logged_metrics(stdout: Path, limit: int = 64 << 20) -> dict[str, float]:
    """The last value of each metric a run printed, read back from its stdout log (at most
    ``limit`` bytes of it): for a run that ended while its orchestrator was down, whose
    metric writes to the journal may have been lost with it."""
    last: dict[str, float] = {}
    try:
        with open(stdout, "rb") as log:
            data = log.read(limit)
    except OSError:
        return last
    for line in data.splitlines():
        if line.startswith(b"{") and b'"metrics"' in line:
            try:
                last.update(_decode_metrics(line).metrics)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
    return last


def copy_logs(source: RunLayout, target: RunLayout) -> None:
    """Give a cache hit the folders a run has and the logs of the run it reuses: those it
    has (a run that wrote nothing to a stream has no log file for it, and neither has its
    hit)."""
    _adopt_logs(target, _logs_to_copy(source, target))


def _adopt_logs(target: RunLayout, logs: list[tuple[Path, Path]]) -> None:
    """``target``'s folder and outputs folder, one ``mkdir`` each as the run supervisor
    makes a run's, then ``logs`` (source, destination) copied."""
    for folder in (target.run_dir, target.outputs):
        make_folder(folder)
    for src, dst in logs:
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(src, dst)


def _logs_to_copy(source: RunLayout, target: RunLayout) -> list[tuple[Path, Path]]:
    """The log files ``source`` has, with where ``target``'s go: a ``stat`` each, where
    ``copyfile`` would look at both files and raise for every hit of a silent run."""
    pairs = []
    for src, dst in ((source.stdout, target.stdout), (source.stderr, target.stderr)):
        with contextlib.suppress(FileNotFoundError):
            os.stat(src)
            pairs.append((src, dst))
    return pairs


async def adopt_cached(run: RunRecord, hit: UseCached, journal: Journal, home: Path) -> None:
    """Give ``run`` the outputs, metrics and logs of the earlier run a cache hit reuses (the
    caller then ends it ``succeeded``). Its metrics are read from the journal, where they are
    committed once its final state is (they are queued before it): only a run of this process
    whose end is still on its way to the journal is waited for (:func:`final_state_of`); the
    copy is queued behind them."""
    await final_state_of(journal, hit.source_run_id)
    target = RunLayout(home, run.id)
    logs = _logs_to_copy(RunLayout(home, hit.source_run_id), target)
    if logs:
        await anyio.to_thread.run_sync(_adopt_logs, target, logs)
    else:  # a silent run's hit: two mkdirs, less than a trip to a worker thread
        _adopt_logs(target, logs)
    journal.copy_metrics(hit.source_run_id, run.id)
    run.metrics = journal.last_metrics([hit.source_run_id]).get(hit.source_run_id, {})
    run.outputs = dict(hit.outputs)
    for name, value in run.outputs.items():
        journal.set_output(run.id, name, value)
    run.cached_from = hit.source_run_id
