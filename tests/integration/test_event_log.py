"""``run --log-json FILE``: every event of the sweep as one JSON record per line, for CI."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

SCRIPT = (
    "import json, sys; print(json.dumps(dict(metrics=dict(loss=0.5)))); sys.exit(int(sys.argv[1]))"
)
SPEC = f"""
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{{code: 0}}, {{code: 3}}]}}
component:
  inputs: [{{name: code, type: int}}]
  run:
    kind: job
    container:
      command: [{json.dumps(sys.executable)}, -c, {json.dumps(SCRIPT)}, "{{{{ code }}}}"]
"""


def test_every_event_is_one_json_record_with_level(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    result = cli("run", str(write(SPEC)), "--home", str(tmp_path / "h"), "--log-json", str(log))
    assert result.code == 1, result.err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [r["event"] for r in records]
    assert kinds[0] == "sweep_started" and kinds[-1] == "sweep_finished"
    assert kinds.count("run_created") == 2 and kinds.count("metric_reported") == 2
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    failed = [r for r in records if r["event"] == "run_state_changed" and r["state"] == "failed"]
    assert [(r["level"], r["reason"], r["exit_code"]) for r in failed] == [
        ("warning", "exit code 3", 3)
    ]
    assert (records[-1]["level"], records[-1]["state"]) == ("error", "failed")
    assert all(r["timestamp"].endswith("Z") for r in records)


def test_an_unwritable_log_fails_before_anything_runs(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "h"
    result = cli("run", str(write(SPEC)), "--home", str(home), "--log-json", str(tmp_path))
    assert result.code == 2
    assert result.err.startswith("orchestrator: --log-json: cannot open"), result.err
    assert "sweep " not in result.err, "no sweep was announced"


def test_a_full_disk_ends_the_log_not_the_sweep(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    """/dev/full accepts the open and fails every write with ENOSPC, like a full disk."""
    home = tmp_path / "h"
    result = cli("run", str(write(SPEC)), "--home", str(home), "--log-json", "/dev/full", "--json")
    assert result.code == 1, result.err  # the sweep itself ran: one run exits 3
    assert result.err.count("--log-json: cannot write: No space left on device") == 1
    summary = json.loads(result.out)
    assert sorted(r["state"] for r in summary["runs"]) == ["failed", "succeeded"]
