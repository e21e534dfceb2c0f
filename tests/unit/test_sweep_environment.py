"""A sweep's runs start from the environment as it was when the sweep was built (a daemon's
sweep: as of its submission), read once per sweep and made again only when it changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.jobs import base_environment, sweep_environment
from orchestrator.executors.base import Job
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from orchestrator.testing import FakeExecutor, FakeRun


def test_a_change_to_the_environment_is_seen_by_the_next_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWEEP_ENV_PROBE", "one")
    first = sweep_environment()
    assert first == base_environment(os.environ) and first["SWEEP_ENV_PROBE"] == "one"
    again = sweep_environment()
    assert again == first and again is not first, "a fresh dict each time"
    again["SWEEP_ENV_PROBE"] = "changed by its taker"
    assert sweep_environment()["SWEEP_ENV_PROBE"] == "one"
    monkeypatch.setenv("SWEEP_ENV_PROBE", "two")
    assert sweep_environment()["SWEEP_ENV_PROBE"] == "two"
    monkeypatch.delenv("SWEEP_ENV_PROBE")
    assert "SWEEP_ENV_PROBE" not in sweep_environment()


SPEC = """\
version: 1.1
kind: operation
matrix: {kind: mapping, values: [{n: 1}]}
component:
  inputs: [{name: n, type: int}]
  run: {kind: job, container: {command: [echo, "{{ n }}"]}}
"""


def test_a_sweep_runs_with_the_environment_of_when_it_was_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    jobs: list[Job] = []

    def handler(job: Job) -> FakeRun:
        jobs.append(job)
        return FakeRun()

    async def main() -> dict[str, Any] | None:
        journal = Journal(tmp_path / "home" / "journal.sqlite")
        try:
            monkeypatch.setenv("SWEEP_ENV_PROBE", "submitted")
            controller = build_sweep(
                compile_plan(load_spec(spec), paths=run_paths(tmp_path / "home")),
                SweepSettings(home=tmp_path / "home", spec_path=str(spec), concurrency=1),
                journal=journal,
                executor=FakeExecutor(handler),
            )
            monkeypatch.setenv("SWEEP_ENV_PROBE", "later")
            await controller.run()
            await journal.flush()
            return journal.provenance_at(controller.sweep_id, None)
        finally:
            journal.close()

    made = anyio.run(main)
    [job] = jobs
    assert job.env["SWEEP_ENV_PROBE"] == "submitted"
    assert made is not None and made["environment"]["SWEEP_ENV_PROBE"] == "submitted"
