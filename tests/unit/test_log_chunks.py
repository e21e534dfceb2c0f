"""Output handled a chunk at a time (``RunOutput.chunk``): the same metrics, stderr tail and
live lines as line by line, without an ``await`` per line."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import Event, LogLine, MetricReported
from orchestrator.engine.output import RunOutput
from orchestrator.engine.records import STDERR_TAIL, RunRecord
from orchestrator.executors.base import LineSink, split_lines
from orchestrator.spec.resolve import RunSpec
from orchestrator.store.journal import Journal


class Journaled:
    """Stands in for the journal: records the metric rows RunOutput writes."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int | None, dict[str, float]]] = []

    def add_metrics(self, run_id: str, step: int | None, values: dict[str, float]) -> None:
        self.rows.append((run_id, step, dict(values)))


def output(bus: EventBus | None = None) -> tuple[RunOutput, Journaled]:
    journal = Journaled()
    run = RunRecord(id="run-1", index=3, spec=cast(RunSpec, None))
    sink = RunOutput(run, bus or EventBus("sweep"), cast(Journal, journal), frozenset({"loss"}))
    return sink, journal


def state(sink: RunOutput, journal: Journaled) -> dict[str, Any]:
    run = sink.run
    return {
        "metrics": run.metrics,
        "outputs": run.outputs,
        "tail": list(run.stderr_tail),
        "rows": journal.rows,
    }


async def by_chunk(blocks: list[tuple[str, bytes]]) -> dict[str, Any]:
    sink, journal = output()
    for stream, block in blocks:
        padded = b"junk" + block + b"more"  # a chunk is a window into a larger buffer
        await sink.chunk(stream, bytearray(padded), 4, 4 + len(block))
    return state(sink, journal)


async def by_line(blocks: list[tuple[str, bytes]]) -> dict[str, Any]:
    sink, journal = output()
    for stream, block in blocks:
        for text in block.decode(errors="replace").split("\n"):
            await sink.line(stream, text)
    return state(sink, journal)


METRIC = b'{"metrics": {"loss": 0.5, "acc": 1}, "step": 2}'
LINES = st.sampled_from(
    [
        METRIC,
        b'{"metrics": {"loss": 0.25}}',
        b'{"metrics": {}}',
        b'{"metrics": "no"}',
        b"{not json",
        b'  {"metrics": {"loss": 9}} indented: not a report',
        b"plain text",
        b"",
        b"\xff\xfe bad bytes",
        "é€😀".encode(),
    ]
)
BLOCKS = st.lists(
    st.tuples(
        st.sampled_from(["stdout", "stderr"]),
        st.lists(LINES, min_size=1, max_size=40).map(b"\n".join),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(BLOCKS)
def test_a_chunk_gives_what_its_lines_one_by_one_give(blocks: list[tuple[str, bytes]]) -> None:
    assert anyio.run(by_chunk, blocks) == anyio.run(by_line, blocks)


@pytest.mark.parametrize(
    "block",
    [
        METRIC,  # the chunk is the report
        b"text\n" + METRIC,  # the last line, without its newline
        METRIC + b"\ntext",  # the first line
        b"a\n" + METRIC + b"\nb\n" + METRIC.replace(b"0.5", b"0.75") + b"\nc",
    ],
)
def test_metric_reports_are_found_wherever_they_are_in_the_chunk(block: bytes) -> None:
    assert anyio.run(by_chunk, [("stdout", block)]) == anyio.run(by_line, [("stdout", block)])
    assert anyio.run(by_chunk, [("stdout", block)])["rows"]


def test_a_metric_line_on_stderr_is_no_report() -> None:
    result = anyio.run(by_chunk, [("stderr", METRIC)])
    assert result["rows"] == []
    assert result["tail"] == [METRIC.decode()]


def test_the_stderr_tail_keeps_only_the_last_lines_of_a_long_chunk() -> None:
    block = b"\n".join(b"err %d" % i for i in range(1000))
    result = anyio.run(by_chunk, [("stderr", block)])
    assert result["tail"] == [f"err {i}" for i in range(1000 - STDERR_TAIL, 1000)]
    short = anyio.run(by_chunk, [("stderr", b"one\ntwo")])
    assert short["tail"] == ["one", "two"]


def test_live_lines_are_published_one_event_per_line_in_order() -> None:
    async def main() -> list[Event]:
        bus = EventBus("sweep")
        subscription = bus.subscribe([LogLine, MetricReported], buffer=100)
        sink, _ = output(bus)
        await sink.chunk("stdout", b"a\n" + METRIC + b"\n\xff", 0, len(METRIC) + 4)
        await bus.close()
        async with subscription.receive:
            return [event async for event in subscription.receive]

    events = anyio.run(main)
    lines = [(e.stream, e.line) for e in events if isinstance(e, LogLine)]
    assert lines == [("stdout", "a"), ("stdout", METRIC.decode()), ("stdout", "\ufffd")]
    assert [type(e).__name__ for e in events] == ["LogLine", "MetricReported", "LogLine", "LogLine"]
    assert all(
        (e.run_id, e.index) == ("run-1", 3)
        for e in events
        if isinstance(e, LogLine | MetricReported)
    )


def test_split_lines_decodes_the_window_and_replaces_bad_bytes() -> None:
    assert split_lines(b"xxa\n\xffb\n\nyy", 2, 7) == ["a", "\ufffdb", ""]


def test_a_line_sink_gets_each_line_of_a_chunk() -> None:
    class Lines(LineSink):
        def __init__(self) -> None:
            self.got: list[tuple[str, str]] = []

        async def line(self, stream: str, text: str) -> None:
            self.got.append((stream, text))

    sink = Lines()
    anyio.run(sink.chunk, "stderr", b"one\ntwo", 0, 7)
    assert sink.got == [("stderr", "one"), ("stderr", "two")]
