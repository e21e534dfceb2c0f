"""One bad run fails that run, never the sweep; and a sweep always reaches a final state."""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.states import RunState, SweepState
from orchestrator.executors.base import Job, Outcome, OutputSink, StopRequest
from orchestrator.executors.local import LocalExecutor
from orchestrator.plugin import FakeExecutor, FakeRun
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout, run_paths

SPEC = f"""
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{{i: 0}}, {{i: 1}}, {{i: 2}}]}}
component:
  inputs: [{{name: i, type: int}}]
  run: {{kind: job, container: {{command: ["{sys.executable}", -c, "print({{{{ i }}}})"]}}}}
"""


def _sweep(spec: Path, home: Path, executor: Any) -> Any:
    settings = SweepSettings(home=home, spec_path=str(spec), concurrency=1, grace=1.0)
    plan = compile_plan(load_spec(spec), paths=run_paths(home))
    journal = Journal(home / "journal.sqlite")
    return build_sweep(plan, settings, journal=journal, executor=executor), journal


def _journaled(journal: Journal, sql: str) -> list[tuple[Any, ...]]:
    journal.flush_sync()
    with sqlite3.connect(journal.path) as conn:
        return list(conn.execute(sql))


class _FullDiskLayout(RunLayout):
    """The run's stdout log is /dev/full: every write fails with ENOSPC, like a full disk."""

    @cached_property
    def stdout(self) -> Path:
        return Path("/dev/full")


class _LogsOnFullDisk(LocalExecutor):
    def __init__(self, home: Path, bad_index: int) -> None:
        super().__init__(home)
        self.bad_index = bad_index

    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Any],
    ) -> Outcome:
        if job.index == self.bad_index:
            job = replace(job, layout=_FullDiskLayout(job.layout.home, job.layout.run_uuid))
        return await super().execute(job, sink, stop, started)


def test_a_run_that_cannot_write_its_logs_fails_alone(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    controller, journal = _sweep(write(SPEC), home, _LogsOnFullDisk(home, bad_index=1))
    try:
        result = anyio.run(controller.run)
        states = [(r.index, r.state, (r.reason or "").split(":")[0]) for r in result.runs]
        assert states == [
            (0, RunState.SUCCEEDED, ""),
            (1, RunState.FAILED, "disk_full"),
            (2, RunState.SUCCEEDED, ""),
        ]
        assert (result.state, result.reason) == (SweepState.FAILED, "1 of 3 runs failed")
        assert _journaled(journal, "SELECT state FROM sweeps") == [("failed",)]
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/home/runs/x"), "disk_full"),
        (ValueError("embedded null byte"), "invalid_argument"),
        (OSError(errno.EACCES, "Permission denied"), "os_error"),
        (RuntimeError("a bug"), "internal_error"),
    ],
)
def test_whatever_an_executor_raises_fails_that_run_with_its_kind(
    write: Callable[..., Path], tmp_path: Path, raised: Exception, kind: str
) -> None:
    def handler(job: Job) -> FakeRun:
        if job.index == 0:
            raise raised
        return FakeRun()

    controller, journal = _sweep(write(SPEC), tmp_path / "home", FakeExecutor(handler))
    try:
        result = anyio.run(controller.run)
        first = result.runs[0]
        assert first.state is RunState.FAILED and (first.reason or "").startswith(f"{kind}: ")
        assert [r.state for r in result.runs[1:]] == [RunState.SUCCEEDED] * 2
        assert result.state is SweepState.FAILED
    finally:
        journal.close()


def test_an_unexpected_engine_error_still_ends_the_sweep(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    """Not a run's fault: the sweep ends failed with the reason, and the run that was going
    is failed too, instead of both staying "running" in the journal for ever."""
    hung = anyio.Event()

    def handler(job: Job) -> FakeRun:
        hung.set()
        return FakeRun(hang=True)

    controller, journal = _sweep(write(SPEC), tmp_path / "home", FakeExecutor(handler))
    create = controller._create

    async def second_create_breaks(spec: Any, suggestion: Any) -> Any:
        if controller.runs:
            await hung.wait()
            raise RuntimeError("boom")
        return await create(spec, suggestion)

    controller._create = second_create_breaks
    controller.settings = replace(controller.settings, concurrency=2)
    try:
        result = anyio.run(controller.run)
        assert (result.state, result.reason) == (
            SweepState.FAILED,
            "internal_error: RuntimeError: boom",
        )
        assert _journaled(journal, "SELECT state, reason FROM sweeps") == [
            ("failed", "internal_error: RuntimeError: boom")
        ]
        assert _journaled(journal, "SELECT state FROM runs") == [("failed",)]
    finally:
        journal.close()
