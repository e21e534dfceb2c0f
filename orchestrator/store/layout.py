"""Where things live under the orchestrator home folder.

HOME/journal.sqlite             the journal (WAL)
HOME/runs/<run uuid>/           a run's context (``globals.context_path``)
    stdout.log  stderr.log      its complete output, byte for byte
    artifacts/                  ``globals.artifacts_path`` (git init clones land here)
    artifacts/<uuid>/outputs/   ``globals.run_outputs_path``
HOME/cache/git/                 clones of init repositories, one per url and revision
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "default_home", "git_cache_dir", "journal_path"]


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

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_uuid

    @property
    def stdout(self) -> Path:
        return self.run_dir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.run_dir / "stderr.log"

    @property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"

    @property
    def outputs(self) -> Path:
        return self.artifacts / self.run_uuid / "outputs"
