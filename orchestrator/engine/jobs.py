"""What the executor gets for one run: argv, environment, working folder, layout, init steps."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import msgspec

from orchestrator.engine.records import RunRecord
from orchestrator.executors.base import Job
from orchestrator.store.layout import RunLayout

__all__ = ["base_environment", "job_for", "sweep_environment"]


def base_environment(
    environ: Mapping[str, str], executable: str = sys.executable
) -> dict[str, str]:
    """The environment every run starts from: ours, unbuffered, with our interpreter's folder
    first on ``PATH``, so that ``python``/``python3`` in a command is the interpreter running
    the orchestrator (``orchestrator.tracking`` importable) even when its venv is not
    activated; ``ORCHESTRATOR_PYTHON`` records which interpreter that is."""
    env = {"PYTHONUNBUFFERED": "1", **environ}
    if executable:
        folder = os.path.dirname(executable)
        path = env.get("PATH", os.defpath)
        entries = path.split(os.pathsep)
        if entries[0] != folder:
            env["PATH"] = os.pathsep.join([folder, *entries]) if path else folder
        env["ORCHESTRATOR_PYTHON"] = executable
    return env


def sweep_environment() -> dict[str, str]:
    """:func:`base_environment` of ``os.environ`` as it is now: what a sweep's runs start
    from, taken when the sweep is built (a daemon's sweep sees the daemon's environment as
    of its submission). Made again only when ``os.environ`` changed: a daemon builds many
    sweeps from one environment, and reading ``os.environ`` decodes every entry; its raw
    entries are compared instead (one C-level comparison). A fresh dict each time."""
    global _last_sweep_environment
    raw = getattr(os.environ, "_data", None)  # CPython's encoded entries, kept in step
    last = _last_sweep_environment
    if raw is not None and last is not None and last[0] == raw:
        return dict(last[1])
    env = base_environment(os.environ)
    if raw is not None:
        _last_sweep_environment = (dict(raw), env)
    return dict(env)


#: The raw ``os.environ`` :func:`sweep_environment` last read, and its answer.
_last_sweep_environment: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def job_for(
    run: RunRecord,
    sweep_id: str,
    home: Path,
    base_dir: Path,
    base_env: Mapping[str, str],
    devices: Mapping[str, str] | None = None,
) -> Job:
    """The job of ``run``: the rendered env over ``base_env``, plus the ``ORCHESTRATOR_*``
    variables; it works in ``container.workingDir``, else the spec's folder (``base_dir``).
    ``devices`` (the run's resource assignment, ``CUDA_VISIBLE_DEVICES``...) wins over both
    environments: a spec cannot hand itself another run's card."""
    layout = RunLayout(home, run.id)
    spec = run.spec
    env = {**base_env, **spec.env}
    if devices:
        env.update(devices)
    env["ORCHESTRATOR_RUN_ID"] = run.id
    env["ORCHESTRATOR_RUN_DIR"] = str(layout.run_dir)
    env["ORCHESTRATOR_OUTPUTS_PATH"] = str(layout.outputs)
    env["ORCHESTRATOR_SWEEP_ID"] = sweep_id
    cwd = Path(spec.working_dir) if spec.working_dir else base_dir
    job = Job(run.id, run.index, list(spec.argv), env, cwd, layout, list(spec.init))
    job.identity = {
        "sweep": sweep_id,
        "index": run.index,
        "params_hash": spec.params_hash,
        "params": msgspec.json.encode(spec.params).decode(),  # as the journal holds them
    }
    if run.suggested is not None:
        job.identity["suggestion"] = run.suggested
    return job
