"""What a person sees while a sweep runs and when it ends.

On a terminal: one line per meaningful transition (running, finished, stopping) plus a status
line redrawn in place (counts by state, running runs with their latest metric, elapsed, ETA).
Elsewhere: the same transition lines only, no redraws. A failed run's last stderr lines are
printed the moment it fails. :func:`summary_table` and :func:`summary_json` describe the end.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import IO, Any

import anyio
import msgspec

from orchestrator.engine.events import (
    Event,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.states import TERMINAL, RunState
from orchestrator.history import run_row

__all__ = ["Reporter", "format_duration", "summary_json", "summary_table"]

#: Transitions worth a line of their own: a run starts, is being stopped or retried, or ends.
_SHOWN = TERMINAL | {RunState.RUNNING, RunState.STOPPING, RunState.RETRYING}
#: The status line's counts, in the table's order: running first, then how runs ended.
_ORDER = [RunState.RUNNING, *(s for s in RunState if s in TERMINAL)]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _pairs(values: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    chosen = list(keys) if keys is not None else list(values)
    return " ".join(f"{k}={_value(values[k])}" for k in chosen if k in values)


class Reporter:
    """Consumes events and writes progress to ``out``."""

    TYPES = (
        SweepStarted,
        RunCreated,
        RunStateChanged,
        MetricReported,
        SweepStopping,
        SweepFinished,
    )

    def __init__(self, out: IO[str], *, live: bool, keys: Sequence[str] | None) -> None:
        self.out = out
        self.live = live
        self.keys = keys
        self.total = 0
        self.started = time.monotonic()
        self.states: dict[str, RunState] = {}
        self.index: dict[str, int] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.begun: dict[str, float] = {}
        self.durations: list[float] = []
        self.concurrency = 1
        self._status_shown = False

    def _write(self, line: str) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[K")
            self._status_shown = False
        self.out.write(line + "\n")

    def handle(self, event: Event) -> None:
        if isinstance(event, SweepStarted):
            self.total, self.concurrency = event.total, event.concurrency
        elif isinstance(event, RunCreated):
            self.index[event.run_id] = event.index
            self.params[event.run_id] = event.params
        elif isinstance(event, MetricReported):
            self.metrics.setdefault(event.run_id, {}).update(event.values)
        elif isinstance(event, RunStateChanged):
            self.states[event.run_id] = event.state
            self._transition(event)
        elif isinstance(event, SweepStopping):
            self._write(f"stopping the sweep ({event.final_state}): {event.reason}")
        elif isinstance(event, SweepFinished):
            self.status(final=True)

    def _transition(self, event: RunStateChanged) -> None:
        now = time.monotonic()
        if event.state is RunState.RUNNING:
            self.begun[event.run_id] = now
        if event.state not in _SHOWN:
            return
        head = f"#{event.index:<4} {event.state.value:<9}"
        if event.state is RunState.RUNNING:
            self._write(f"{head} {_pairs(self.params.get(event.run_id, {}), self.keys)}".rstrip())
            return
        begun = self.begun.get(event.run_id)
        took = now - begun if begun is not None else None
        if took is not None and event.state in TERMINAL:
            self.durations.append(took)
        details = [format_duration(took)] if took is not None else []
        if event.reason:
            details.insert(0, f"({event.reason})")
        metrics = _pairs(self.metrics.get(event.run_id, {}))
        if metrics:
            details.append(metrics)
        self._write(f"{head} {' '.join(details)}".rstrip())
        for line in event.stderr_tail or []:
            self._write(f"      | {line[:500]}")

    def status(self, final: bool = False) -> None:
        if not self.live:
            return
        counts = Counter(self.states.values())
        done = sum(counts[s] for s in TERMINAL)
        running = counts[RunState.RUNNING]
        pending = max(self.total - done - running, 0)
        parts = [f"{done}/{self.total} done"]
        parts += [f"{counts[s]} {s.value}" for s in _ORDER if counts[s]]
        if pending and not final:
            parts.append(f"{pending} pending")
        elapsed = time.monotonic() - self.started
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.durations and pending and not final:
            average = sum(self.durations) / len(self.durations)
            eta = average * (pending + running) / max(self.concurrency, 1)
            parts.append(f"ETA {format_duration(eta)}")
        live = [
            f"#{self.index[r]} {_pairs(self.metrics.get(r, {}))}".strip()
            for r, s in self.states.items()
            if s is RunState.RUNNING
        ]
        line = " · ".join(parts)
        if live:
            line += " | " + ", ".join(live)
        width = shutil.get_terminal_size((100, 20)).columns
        self.out.write("\r\x1b[K" + line[: width - 1])
        self._status_shown = True
        if final:
            self.out.write("\n")
            self._status_shown = False
        self.out.flush()

    async def consume(self, receive: anyio.abc.ObjectReceiveStream[Event]) -> None:
        async with receive:
            async for event in receive:
                self.handle(event)
                self.out.flush()

    async def tick(self) -> None:
        while self.live:
            await anyio.sleep(0.5)
            self.status()


def _run_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    return [run_row(r) for r in runs]


def summary_json(sweep_id: str, state: str, runs: Sequence[Any]) -> str:
    body = {"sweep": sweep_id, "state": state, "runs": _run_rows(runs)}
    return msgspec.json.encode(body).decode()


def summary_table(runs: Sequence[Any], keys: Sequence[str] | None) -> str:
    return rows_table(_run_rows(runs), keys)


def rows_table(rows: Sequence[dict[str, Any]], keys: Sequence[str] | None) -> str:
    """The final table: index, state (and why), duration, outputs, params."""
    lines = [("#", "state", "duration", "outputs", "params")]
    for r in rows:
        outputs = _pairs(r["outputs"]) or "-"
        state = (
            r["state"]
            if not r["reason"] or r["state"] == RunState.SUCCEEDED
            else (f"{r['state']} ({r['reason']})")
        )
        lines.append(
            (
                str(r["index"]),
                state[:60],
                format_duration(r["duration_s"]),
                outputs,
                _pairs(r["params"], keys),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = []
    for line in lines:
        cells = [line[i].ljust(widths[i]) for i in range(4)] + [line[4]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
