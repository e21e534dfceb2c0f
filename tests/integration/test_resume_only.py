"""``rerun``'s state filter takes only states a run ends in; anything else is a clear error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.engine.recovery import open_journal
from orchestrator.exceptions import SpecError
from orchestrator.history import prepare_resume
from tests.conftest import CliResult

SPEC = f"""
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{{code: 0}}, {{code: 1}}]}}
component:
  inputs: [{{name: code, type: int}}]
  run: {{kind: job, container: {{command: ["{sys.executable}", -c,
    "import sys; sys.exit({{{{ code }}}})"]}}}}
"""


def test_only_states_must_be_end_states(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    assert cli("run", str(write(SPEC)), "--home", str(home)).code == 1
    journal = open_journal(home / "journal.sqlite")
    try:
        row = journal.find_sweep("last")
        with pytest.raises(SpecError, match=r"only: expected states a run ends in .*'runing'"):
            prepare_resume(journal, row, home=home, only_states={"runing"})
        ready = prepare_resume(journal, row, home=home, only_states={"failed"})
        assert ready.resume.only is not None and len(ready.resume.only) == 1
    finally:
        journal.close()
