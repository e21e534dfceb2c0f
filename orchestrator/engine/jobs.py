"""What the executor gets for one run: argv, environment, working folder, layout, init steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from orchestrator.engine.records import RunRecord
from orchestrator.executors.base import Job
from orchestrator.store.layout import RunLayout

__all__ = ["job_for"]


def job_for(
    run: RunRecord, sweep_id: str, home: Path, base_dir: Path, base_env: Mapping[str, str]
) -> Job:
    """The job of ``run``: the rendered env over ``base_env``, plus the ``ORCHESTRATOR_*``
    variables; it works in ``container.workingDir``, else the spec's folder (``base_dir``)."""
    layout = RunLayout(home, run.id)
    spec = run.spec
    env = {**base_env, **spec.env}
    env["ORCHESTRATOR_RUN_ID"] = run.id
    env["ORCHESTRATOR_RUN_DIR"] = str(layout.run_dir)
    env["ORCHESTRATOR_OUTPUTS_PATH"] = str(layout.outputs)
    env["ORCHESTRATOR_SWEEP_ID"] = sweep_id
    cwd = Path(spec.working_dir) if spec.working_dir else base_dir
    return Job(run.id, run.index, list(spec.argv), env, cwd, layout, list(spec.init))
