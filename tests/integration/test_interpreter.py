"""Runs get the orchestrator's own interpreter as ``python``/``python3``: a training script can
import ``orchestrator.tracking`` even when the venv is not activated and another ``python3``
comes first on ``PATH``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from orchestrator.engine.jobs import base_environment

ROOT = Path(__file__).resolve().parents[2]


def test_python3_in_a_command_is_the_orchestrators_interpreter(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    # What an unactivated venv looks like from the run's side: the system's python3 first.
    wrong = tmp_path / "bin"
    wrong.mkdir()
    for name in ("python", "python3"):
        (wrong / name).write_text("#!/bin/sh\necho wrong python >&2\nexit 1\n")
        (wrong / name).chmod(0o755)
    seen = tmp_path / "seen.json"
    probe = (
        "import json, os, orchestrator.tracking; "
        "env = [os.environ['ORCHESTRATOR_PYTHON'], os.environ['PATH']]; "
        f"json.dump(env, open({str(seen)!r}, 'w'))"
    )
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: [python3, -c, "{probe}"]}}}}
    """)
    env = {**os.environ, "PATH": f"{wrong}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(spec), "--home", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    python, path = json.loads(seen.read_text())
    assert python == sys.executable
    assert path == f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"


def test_the_interpreters_folder_goes_first_once_and_the_rest_stays() -> None:
    folder = "/opt/venv/bin"
    python = f"{folder}/python"
    env = base_environment({"PATH": "/usr/bin:/bin", "HOME": "/h"}, python)
    assert env["PATH"] == f"{folder}:/usr/bin:/bin"
    assert (env["HOME"], env["ORCHESTRATOR_PYTHON"]) == ("/h", python)
    assert base_environment({"PATH": f"{folder}:/bin"}, python)["PATH"] == f"{folder}:/bin"
    assert base_environment({}, python)["PATH"] == f"{folder}{os.pathsep}{os.defpath}"
    assert base_environment({"PATH": ""}, python)["PATH"] == folder
