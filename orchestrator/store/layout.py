"""Where things live under the orchestrator home folder.

HOME/journal.sqlite             the journal (WAL)
HOME/runs/<run uuid>/           a run's context (``globals.context_path``,
                                ``globals.run_artifacts_path``)
    stdout.log  stderr.log      its complete output, byte for byte
    artifacts/                  ``globals.artifacts_path`` and ``store_path`` (git init clones
                                land here; ``termination.ttl`` removes it)
    outputs/                    ``globals.run_outputs_path`` (``ORCHESTRATOR_OUTPUTS_PATH``)
HOME/cache/git/                 clones of init repositories, one per url and revision
HOME/cache/entries.sqlite       the run cache's entries
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

__all__ = ["RunLayout", "default_home", "git_cache_dir", "journal_path", "run_paths"]


def default_home() -> Path:
    return Path(os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator").absolute()


def journal_path(home: Path) -> Path:
    return home / "journal.sqlite"


def git_cache_dir(home: Path) -> Path:
    return home / "cache" / "git"


@dataclass(frozen=True)
class RunLayout:
    home: Path
    run_uuid: str

    @cached_property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_uuid

    @cached_property
    def stdout(self) -> Path:
        return self.run_dir / "stdout.log"

    @cached_property
    def stderr(self) -> Path:
        return self.run_dir / "stderr.log"

    @cached_property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"

    @cached_property
    def outputs(self) -> Path:
        return self.run_dir / "outputs"

    def template_paths(self) -> dict[str, str]:
        """The local paths behind ``globals.*``."""
        return {
            "context_path": str(self.run_dir),
            "artifacts_path": str(self.artifacts),
            "run_artifacts_path": str(self.run_dir),
            "run_outputs_path": str(self.outputs),
            "run_relative_outputs_path": "outputs",
            "store_path": str(self.artifacts),
        }


def run_paths(home: Path) -> Callable[[str], dict[str, str]]:
    """Each run's ``globals.*`` paths under ``home``, by run uuid (for ``compile_plan``)."""

    def paths(run_uuid: str) -> dict[str, str]:
        return RunLayout(home, run_uuid).template_paths()

    return paths
