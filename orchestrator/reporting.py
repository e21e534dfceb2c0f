"""What a person sees while a sweep runs and when it ends.

On a terminal: one line per meaningful transition (running, finished, stopping) plus a status
line (counts by state, running runs with their latest metric, elapsed, ETA) kept below them by
:mod:`orchestrator.live_display` and redrawn right after every line. Elsewhere: the same
transition lines only, no redraws. A failed run's last stderr lines are printed the moment it
fails. :func:`write_final_table` and :func:`write_summary_json` describe the end (a sweep of
more than :data:`SUMMARY_ABOVE` runs as a summary, its JSON streamed); :func:`resume_hint`
says how to continue a sweep that did not succeed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import IO, Any, Protocol

import anyio
import msgspec

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.events import (
    Event,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.resources import given_text
from orchestrator.engine.states import TERMINAL, RunState
from orchestrator.history import Objective, objective_of, run_row
from orchestrator.hooks import CACHE_HIT_REASON
from orchestrator.wording import plural

__all__ = [
    "Display",
    "Objective",
    "PlainLines",
    "Reporter",
    "dag_tree",
    "format_duration",
    "objective_of",
    "resume_hint",
    "rows_table",
    "short_reason",
    "show_hint",
    "summary_json",
    "summary_table",
    "write_final_table",
    "write_summary_json",
]

#: Transitions worth a line of their own: a run starts, is being stopped or retried, or ends.
_SHOWN = TERMINAL | {RunState.RUNNING, RunState.STOPPING, RunState.RETRYING}
#: The status line's counts, in the table's order: running first, then how runs ended.
_ORDER = [RunState.RUNNING, *(s for s in RunState if s in TERMINAL)]
#: Seconds between redraws of the status line when nothing else happens (elapsed, metrics).
TICK_S = 0.5


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plain(value: Any) -> Any:
    """``value`` as the journal gives it back (a date is its ISO text), so that ``run`` and
    ``show`` print the same thing."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return msgspec.to_builtins(value)


def _value(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _pairs(values: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    """``k=v`` for ``keys`` (all when None), in the params' own order (the component's inputs),
    so a transition line, the final table and ``show`` list them alike."""
    chosen = values.keys() if keys is None else values.keys() & set(keys)
    return " ".join(f"{k}={_value(values[k])}" for k in values if k in chosen)


# --------------------------------------------------------------------------- while it runs
class Display(Protocol):
    """Where the reporter's lines go."""

    def show(self, lines: Sequence[str], status: str | None) -> None:
        """Print ``lines``; on a terminal, then redraw the status line (``status``, or the
        last one when None)."""

    def close(self) -> None:
        """The sweep is over: leave the last status line (if any) on the screen."""

    @property
    def stream(self) -> IO[str]:
        """A text stream for everything else said during the sweep (signals, plugins):
        each line printed like a transition line."""


class PlainLines:
    """Not a terminal: transition lines only, no status line, no escape sequences."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def show(self, lines: Sequence[str], status: str | None) -> None:
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()

    @property
    def stream(self) -> IO[str]:
        return self.out


def _worth_saying(event: Event) -> bool:
    """What a quiet reporter shows: a failed run (its reason and stderr), a stop."""
    return not isinstance(event, RunStateChanged) or event.state is RunState.FAILED


def _display(out: IO[str], live: bool) -> Display:
    if not live:
        return PlainLines(out)
    from orchestrator.live_display import LiveDisplay  # rich: only on a terminal

    return LiveDisplay(out)


class Reporter:
    """Consumes events and writes progress to ``out``: with ``live``, through a status line
    that stays below the transition lines."""

    TYPES = (
        SweepStarted,
        RunCreated,
        RunStateChanged,
        MetricReported,
        SweepStopping,
        SweepFinished,
    )

    #: What a quiet reporter (``--json`` without a terminal) still says: why the sweep
    #: stops, and each failed run with its last stderr lines.
    QUIET_TYPES = (RunStateChanged, SweepStopping)

    def __init__(
        self,
        out: IO[str],
        *,
        live: bool,
        keys: Sequence[str] | None,
        quiet: bool = False,
        objective: Objective | None = None,
    ) -> None:
        self.live = live and not quiet
        self.quiet = quiet
        self.display = _display(out, self.live)
        self.keys = keys
        self.total = 0
        self.started = time.monotonic()
        #: Runs not yet finished, by id; finished ones are only counted (``done``), so that
        #: a million-run sweep keeps no per-run state here.
        self.states: dict[str, RunState] = {}
        self.done: Counter[RunState] = Counter()
        self.index: dict[str, int] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.begun: dict[str, float] = {}
        #: What each running run was given of the machine, shown on its "running" line.
        self.given: dict[str, str] = {}
        #: How many finished runs were timed, and their total time (for the ETA).
        self.timed = 0
        self.durations_total = 0.0
        self.concurrency = 1
        self.finished = False
        self.stop_reason: str | None = None
        #: What the sweep optimises, and the best value a succeeded run reported so far
        #: (with its index), shown on the status line.
        self.objective = objective
        self.best: tuple[float, int] | None = None
        #: Where each run not yet finished sits in an adaptive search.
        self.places: dict[str, dict[str, Any]] = {}

    def subscribe(self, bus: EventBus) -> Subscription:
        """The events this reporter shows, and no more (quiet: a failed run, a stop)."""
        if self.quiet:
            return bus.subscribe(self.QUIET_TYPES, accept=_worth_saying)
        return bus.subscribe(self.TYPES)

    @property
    def err(self) -> IO[str]:
        """Where anything else said during the sweep goes, so it does not break the display."""
        return self.display.stream

    def handle(self, event: Event) -> None:
        lines: list[str] = []
        if isinstance(event, SweepStarted):
            self.total, self.concurrency = event.total, event.concurrency
        elif isinstance(event, RunCreated):
            self.index[event.run_id] = event.index
            self.params[event.run_id] = event.params
            if event.place:
                self.places[event.run_id] = event.place
        elif isinstance(event, MetricReported):
            self.metrics.setdefault(event.run_id, {}).update(event.values)
            return  # shown at the next tick: metrics may come thousands a second
        elif isinstance(event, RunStateChanged):
            lines = self._transition(event)
            if event.state in TERMINAL:
                self._forget(event.run_id)
                self.done[event.state] += 1
            else:
                self.states[event.run_id] = event.state
        elif isinstance(event, SweepStopping):
            self.stop_reason = event.reason
            lines = [f"stopping the sweep ({event.final_state}): {event.reason}"]
        elif isinstance(event, SweepFinished):
            self.finished = True
        self.display.show(lines, self.status_line() if self.live else None)

    def _forget(self, run_id: str) -> None:
        known: dict[str, Any]
        for known in (
            self.states,
            self.index,
            self.params,
            self.metrics,
            self.begun,
            self.given,
            self.places,
        ):
            known.pop(run_id, None)

    def _transition(self, event: RunStateChanged) -> list[str]:
        now = time.monotonic()
        if event.state is RunState.RUNNING:
            self.begun[event.run_id] = now
        elif event.resources:
            self.given[event.run_id] = _devices(event.resources)
        if event.state is RunState.SUCCEEDED:
            self._score(event.run_id, event.index)
        if event.state not in _SHOWN:
            return []
        shown = "cached" if _is_cache_hit(event.reason) else event.state.value
        head = f"#{event.index:<4} {shown:<9}"
        if event.state is RunState.RUNNING:
            given = self.given.get(event.run_id)
            on = f" [{given}]" if given else ""
            place = self.places.get(event.run_id)
            where = f"({_place(place)}) " if place else ""
            params = _pairs(self.params.get(event.run_id, {}), self.keys)
            return [f"{head} {where}{params}{on}".rstrip()]
        begun = self.begun.get(event.run_id)
        took = now - begun if begun is not None else None
        if took is not None and event.state in TERMINAL:
            self.timed += 1
            self.durations_total += took
        details = [format_duration(took)] if took is not None else []
        if event.reason and not _is_cache_hit(event.reason):
            # The sweep's stop reason was printed in full once ("stopping the sweep ...").
            said = event.reason == self.stop_reason
            details.insert(0, f"({short_reason(event.reason) if said else event.reason})")
        metrics = _pairs(self.metrics.get(event.run_id, {}))
        if metrics:
            details.append(metrics)
        lines = [f"{head} {' '.join(details)}".rstrip()]
        lines += [f"      | {line[:500]}" for line in event.stderr_tail or []]
        return lines

    def _score(self, run_id: str, index: int) -> None:
        """Keep the best value of the objective a succeeded run reported."""
        if self.objective is None:
            return
        value = self.metrics.get(run_id, {}).get(self.objective.metric)
        if value is None:
            return
        better = max if self.objective.optimization == "maximize" else min
        if self.best is None or better(value, self.best[0]) != self.best[0]:
            self.best = (value, index)

    def status_line(self) -> str:
        """Counts by state, elapsed time and ETA, and the running runs' latest metrics."""
        counts = Counter(self.states.values()) + self.done
        done = sum(counts[s] for s in TERMINAL)
        running = counts[RunState.RUNNING]
        pending = 0 if self.finished else max(self.total - done - running, 0)
        # An adaptive search that decides as it goes has no total to count down to.
        parts = [f"{done}/{self.total} done" if self.total else f"{done} done"]
        parts += [f"{counts[s]} {s.value}" for s in _ORDER if counts[s]]
        if pending:
            parts.append(f"{pending} pending")
        parts.append(f"elapsed {format_duration(time.monotonic() - self.started)}")
        if self.timed and pending:
            average = self.durations_total / self.timed
            eta = average * (pending + running) / max(self.concurrency, 1)
            parts.append(f"ETA {format_duration(eta)}")
        if self.best is not None and self.objective is not None:
            value, index = self.best
            parts.append(f"best {self.objective.metric}={_value(value)} (#{index})")
        live = [
            f"#{self.index[r]} {_pairs(self.metrics.get(r, {}))}".strip()
            for r, s in self.states.items()
            if s is RunState.RUNNING
        ]
        line = " · ".join(parts)
        return line + " | " + ", ".join(live) if live else line

    def status(self) -> None:
        """Redraw the status line (elapsed time and metrics move on between events)."""
        if self.live:
            self.display.show([], self.status_line())

    def close(self) -> None:
        """The sweep is over: no more redraws; the last status line stays on the screen."""
        self.live = False
        self.display.close()

    async def consume(self, receive: anyio.abc.ObjectReceiveStream[Event]) -> None:
        async with receive:
            async for event in receive:
                self.handle(event)

    async def tick(self) -> None:
        while self.live:
            await anyio.sleep(TICK_S)
            self.status()


# --------------------------------------------------------------------------- at the end
#: A reason up to this long is shown in the state column as it is.
_SHORT = 24
#: Short names of long reasons, by how they start (the full text is printed below the table).
_LABELS = (
    ("early stopping:", "early stop"),
    ("early_stopped:", "early stop"),
    ("failure early stopping:", "too many failures"),
    ("the time budget", "time budget spent"),
    ("journal write failed", "journal error"),
)


def short_reason(reason: str) -> str:
    """``reason`` in at most a few words for the state column: as it is when it is short,
    else a name for its kind (``early stop``), else its first whole words and ``…``."""
    if len(reason) <= _SHORT:
        return reason
    for start, label in _LABELS:
        if reason.startswith(start):
            return label
    head = reason.split(":", 1)[0].strip()
    if 0 < len(head) <= _SHORT:
        return head
    words: list[str] = []
    for word in reason.split():
        if len(" ".join([*words, word])) > _SHORT - 1:
            break
        words.append(word)
    return (" ".join(words) or reason[: _SHORT - 1]) + "…"


def _number(row: dict[str, Any], name: str) -> float | None:
    value = row["outputs"].get(name, row.get("metrics", {}).get(name))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _is_cache_hit(reason: str | None) -> bool:
    return (reason or "").startswith(CACHE_HIT_REASON)


def _state_text(row: dict[str, Any]) -> tuple[str, str | None]:
    """The state column, and the full reason when the column holds only a short name."""
    state, reason = row["state"], row["reason"]
    if state == RunState.SUCCEEDED:
        return ("cached" if _is_cache_hit(reason) else state), None
    if not reason:
        return state, None
    short = short_reason(reason)
    return f"{state}: {short}", (reason if short != reason else None)


def _shown_params(rows: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The params that tell the rows apart (all of them for a single row), in the order the
    runs carry them, and those every row has with the same value."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["params"] if k not in keys]
    if len(rows) < 2:
        return keys, {}
    first = rows[0]["params"]
    same = {
        k: first[k]
        for k in keys
        if all(k in r["params"] and _plain(r["params"][k]) == _plain(first[k]) for r in rows)
    }
    return [k for k in keys if k not in same], same


def _align(lines: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the last one is left as it is."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]).rstrip()
        for line in lines
    ]


def _notes(reasons: dict[str, list[int]]) -> list[str]:
    """One line per long reason: its short name, the runs that have it, the full text."""
    return [
        f"{short_reason(reason)} ({' '.join(f'#{i}' for i in sorted(set(where)))}): {reason}"
        for reason, where in reasons.items()
    ]


def _best(rows: Sequence[dict[str, Any]], objective: Objective, keys: list[str]) -> str | None:
    scored = [(v, r) for r in rows if (v := _number(r, objective.metric)) is not None]
    if not scored:
        return None
    pick = max if objective.optimization == "maximize" else min
    value, row = pick(scored, key=lambda pair: pair[0])
    params = _pairs(row["params"], keys)
    return (
        f"best run by {objective.metric} ({objective.optimization}): #{row['index']} "
        f"{objective.metric}={_value(value)}" + (f" ({params})" if params else "")
    )


def _cells(
    r: dict[str, Any],
    keys: list[str],
    attempts: bool,
    devices: bool = False,
    places: bool = False,
    usage: bool = False,
) -> tuple[list[str], str | None]:
    """One row of the table, and its full reason when the state column holds a short one."""
    state, reason = _state_text(r)
    outputs = dict(sorted(r["outputs"].items()))
    cells = [
        str(r["index"]),
        *([str(r.get("attempt", 1))] if attempts else []),
        state,
        format_duration(r["duration_s"]),
        *([_cpu(r.get("cpu_s")), _bytes(r.get("max_rss"))] if usage else []),
        *([_place(r.get("place"))] if places else []),
        *([_devices(r.get("resources"))] if devices else []),
        _pairs(outputs) or "-",
        _pairs(r["params"], keys),
    ]
    return cells, reason


def _head(
    attempts: bool, devices: bool = False, places: bool = False, usage: bool = False
) -> list[str]:
    return [
        "#",
        *(["attempt"] if attempts else []),
        "state",
        "duration",
        *(["cpu_s", "max_rss"] if usage else []),
        *(["search"] if places else []),
        *(["resources"] if devices else []),
        "outputs",
        "params",
    ]


def _cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def _bytes(size: int | None) -> str:
    """``212M``: binary units, as ``ls -h`` prints them."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}G"


def _place(place: dict[str, Any] | None) -> str:
    """Where a run sits in an adaptive search: ``bracket 3 rung 1``, ``iteration 2``."""
    return " ".join(f"{key} {value}" for key, value in (place or {}).items()) or "-"


def _devices(given: dict[str, Any] | None) -> str:
    return given_text(given or {}) or "-"


def rows_table(
    rows: Sequence[dict[str, Any]],
    *,
    total: int | None = None,
    objective: Objective | None = None,
    attempts: bool = False,
) -> str:
    """The final table of ``run`` and the table of ``show``: index (and attempt), state,
    duration, outputs (sorted by name), the params that differ between runs. Below it: each
    long reason once, runs never started, the params every run shares, the best run."""
    keys, same = _shown_params(rows)
    devices = any(r.get("resources") for r in rows)
    places = any(r.get("place") for r in rows)
    usage = any(r.get("cpu_s") is not None for r in rows)
    lines = [_head(attempts, devices, places, usage)]
    reasons: dict[str, list[int]] = {}
    for r in rows:
        cells, reason = _cells(r, keys, attempts, devices, places, usage)
        if reason is not None:
            reasons.setdefault(reason, []).append(r["index"])
        lines.append(cells)
    out = _align(lines)
    below = _notes(reasons)
    if total is not None and total > len(rows):
        below.append(f"{total - len(rows)} of {plural(total, 'run')} not started")
    if same:
        below.append(f"same in every run: {_pairs(same)}")
    best = _best(rows, objective, keys) if objective is not None else None
    if best is not None:
        below.append(best)
    return "\n".join(out + (["", *below] if below else []))


def dag_tree(body: dict[str, Any], *, attempts: bool = False) -> str:
    """A pipeline as ``show`` and ``run`` print it: the pipeline, then each node (state,
    reason, its sweep) with the table of its runs below it, indented."""
    reason = f" ({body['reason']})" if body.get("reason") else ""
    lines = [f"pipeline {body['sweep'][:12]} {body.get('name') or ''} {body['state']}{reason}"]
    lines.append(f"spec {body.get('spec')}")
    for node in body.get("nodes", []):
        why = f" ({node['reason']})" if node.get("reason") else ""
        runs = node["runs"]
        count = f", {plural(len(runs), 'run')}" if runs else ""
        lines.append("")
        lines.append(
            f"node {node['name']}: {node['state']}{why}  [sweep {node['sweep_id'][:12]}{count}]"
        )
        if runs:
            table = rows_table(runs, attempts=attempts)
            lines.extend(f"    {line}".rstrip() for line in table.splitlines())
    return "\n".join(lines)


def _run_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    return [run_row(r) for r in runs]


def summary_json(sweep_id: str, state: str, runs: Sequence[Any], reason: str | None = None) -> str:
    body = {"sweep": sweep_id, "state": state, "reason": reason, "runs": _run_rows(runs)}
    return msgspec.json.encode(body).decode()


def summary_table(
    runs: Sequence[Any], *, total: int | None = None, objective: Objective | None = None
) -> str:
    return rows_table(_run_rows(runs), total=total, objective=objective)


# --------------------------------------------------------------------------- a big sweep's end
#: Runs above which ``run`` prints a summary instead of a row per run: the runs a sweep keeps
#: in memory (past them its records are read back from the journal), and already more lines
#: than anyone reads in a terminal; ``show`` pages through all of them.
SUMMARY_ABOVE = 1000
#: Rows a summary shows at each end of the sweep.
SUMMARY_ENDS = 10
#: Runs listed by index after a long reason in a summary (the rest are counted).
_LISTED = 10
#: Rows encoded per write of the streamed ``--json``.
_JSON_BATCH = 256


def write_summary_json(
    out: IO[str], sweep_id: str, state: str, runs: Iterable[Any], reason: str | None = None
) -> None:
    """:func:`summary_json` written as the runs come (the same bytes), so the JSON of a sweep
    of 10^6 runs is never whole in memory (``runs`` may read the journal page by page)."""
    encode = msgspec.json.Encoder().encode
    head = encode({"sweep": sweep_id, "state": state, "reason": reason})
    out.write(head[:-1].decode() + ',"runs":[')
    batch: list[bytes] = []
    separator = b""
    for run in runs:
        batch.append(encode(run_row(run)))
        if len(batch) == _JSON_BATCH:
            out.write((separator + b",".join(batch)).decode())
            batch, separator = [], b","
    if batch:
        out.write((separator + b",".join(batch)).decode())
    out.write("]}")


def write_final_table(
    out: IO[str],
    runs: Sequence[Any],
    *,
    total: int | None,
    objective: Objective | None,
    show: str,
) -> None:
    """The final table of ``run``: every row up to :data:`SUMMARY_ABOVE` runs, else a summary
    read in one pass (``show``: the command that lists every run, to point at)."""
    if len(runs) <= SUMMARY_ABOVE:
        out.write(summary_table(runs, total=total, objective=objective))
        return
    summary = _Summary(objective)
    for run in runs:
        summary.add(run_row(run))
    out.write(summary.text(total, show))


class _Summary:
    """What a summary of a big sweep shows, gathered run by run in constant memory: counts by
    state, the first and last rows, the params that differ, long reasons, the best run."""

    def __init__(self, objective: Objective | None) -> None:
        self.objective = objective
        self.count = 0
        self.states: Counter[str] = Counter()
        self.first: list[dict[str, Any]] = []
        self.last: deque[dict[str, Any]] = deque(maxlen=SUMMARY_ENDS)
        self.keys: dict[str, None] = {}
        #: Params with one value in every run so far, as ``_plain`` gives it.
        self.same: dict[str, Any] | None = None
        #: Long reasons: how many runs have each, and the first few of them.
        self.reasons: dict[str, tuple[int, list[int]]] = {}
        self.best: tuple[float, dict[str, Any]] | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.count += 1
        state, reason = _state_text(row)
        self.states[state.split(":", 1)[0]] += 1
        if len(self.first) < SUMMARY_ENDS:
            self.first.append(row)
        else:
            self.last.append(row)
        params = row["params"]
        self.keys.update(dict.fromkeys(params))
        if self.same is None:
            self.same = {k: _plain(v) for k, v in params.items()}
        else:
            same = self.same
            for key in [k for k, v in same.items() if k not in params or _plain(params[k]) != v]:
                del same[key]
        if reason is not None:
            n, listed = self.reasons.get(reason, (0, []))
            if len(listed) < _LISTED:
                listed.append(row["index"])
            self.reasons[reason] = (n + 1, listed)
        if self.objective is not None:
            self._score(row, self.objective)

    def _score(self, row: dict[str, Any], objective: Objective) -> None:
        """Keep the best run so far; the first of equals, as ``max``/``min`` over a list."""
        value = _number(row, objective.metric)
        if value is None:
            return
        best = self.best
        maximize = objective.optimization == "maximize"
        if best is None or (value > best[0] if maximize else value < best[0]):
            self.best = (value, row)

    def text(self, total: int | None, show: str) -> str:
        same = self.same or {}
        keys = [k for k in self.keys if k not in same]
        head = [_head(False)] + [_cells(r, keys, False)[0] for r in self.first]
        tail = [_cells(r, keys, False)[0] for r in self.last]
        lines = _align(head + tail)
        hidden = self.count - len(self.first) - len(self.last)
        if hidden:
            lines.insert(len(head), f"... {hidden:,} more (all of them: {show})")
        counts = ", ".join(f"{n:,} {state}" for state, n in sorted(self.states.items()))
        below = [f"{self.count:,} runs: {counts}"]
        for reason, (n, listed) in self.reasons.items():
            more = f" and {n - len(listed):,} more" if n > len(listed) else ""
            runs = " ".join(f"#{i}" for i in listed)
            below.append(f"{short_reason(reason)} ({runs}{more}): {reason}")
        if total is not None and total > self.count:
            below.append(f"{total - self.count:,} of {total:,} runs not started")
        if same:
            below.append(f"same in every run: {_pairs(same)}")
        best = _best([self.best[1]], self.objective, keys) if self.best and self.objective else None
        if best is not None:
            below.append(best)
        return "\n".join([*lines, "", *below])


# --------------------------------------------------------------------------- what next
def _python() -> str:
    """How to name this interpreter in a command to type here: ``python`` (or ``python3``)
    when that is what PATH finds, else its path (relative when under this folder)."""
    here = os.path.abspath(sys.executable)
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found is not None and os.path.abspath(found) == here:
            return name
    relative = os.path.relpath(here)
    return relative if not relative.startswith("..") else here


def _program() -> str:
    """The command that started this process: the ``orchestrator`` script, or
    ``python -m orchestrator``."""
    started = sys.argv[0] if sys.argv else ""
    if os.path.basename(started) == "orchestrator":
        on_path = shutil.which("orchestrator")
        if on_path is not None and os.path.abspath(on_path) == os.path.abspath(started):
            return "orchestrator"
        return shlex.quote(started)
    return f"{shlex.quote(_python())} -m orchestrator"


def show_hint(sweep_id: str, home_arg: str | None) -> str:
    """The command that lists every run of a sweep (``--limit``/``--offset`` page it)."""
    where = f" --home {shlex.quote(home_arg)}" if home_arg is not None else ""
    return f"{_program()} show {sweep_id[:12]}{where}"


def resume_hint(
    sweep_id: str, state: str, home_arg: str | None, *, adaptive: bool = False
) -> list[str]:
    """The commands that continue a sweep that was stopped or failed (none otherwise):
    ``resume`` for everything not yet succeeded, ``rerun --failed`` for the failed runs (not
    for an adaptive search, whose later suggestions came from those results)."""
    if state not in ("stopped", "failed"):
        return []
    where = f" --home {shlex.quote(home_arg)}" if home_arg is not None else ""
    command = _program()
    short = sweep_id[:12]
    hints = [f"resume: {command} resume {short}{where}"]
    if state == "failed" and not adaptive:
        hints.append(f"re-run only the failed runs: {command} rerun {short} --failed{where}")
    return hints
