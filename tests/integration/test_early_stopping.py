"""Early stopping and termination with real subprocesses reporting metrics on a schedule."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = ROOT / "tests" / "components" / "schedule.py"
PY = sys.executable


def schedule_spec(
    write: Callable[..., Path],
    values: list[dict[str, Any]],
    rules: str,
    *,
    concurrency: int = 1,
    termination: str = "",
    metric: str = "loss",
    pause: float = 0.3,
) -> Path:
    return write(f"""
        version: 1.1
        kind: operation
        {termination}
        matrix:
          kind: mapping
          concurrency: {concurrency}
          values: {json.dumps(values)}
          earlyStopping: {rules}
        component:
          inputs: [{{name: vals, type: str}}, {{name: code, type: int, value: 0}}]
          run:
            kind: job
            container:
              command: ["{PY}", "{SCHEDULE}", {metric}, "{{{{ vals }}}}", "{pause}",
                        "{{{{ code }}}}"]
    """)


def steps_reported(home: Path, run_id: str) -> list[int]:
    with sqlite3.connect(home / "journal.sqlite") as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT step FROM metrics WHERE run_id = ? ORDER BY rowid", (run_id,)
            )
        ]


def run(cli: Callable[..., CliResult], spec: Path, home: Path, *extra: str) -> dict[str, Any]:
    result = cli(str(spec), "--json", "--no-plugin", "cache", "--home", str(home), *extra)
    summary: dict[str, Any] = json.loads(result.out)
    summary["code"] = result.code
    summary["err"] = result.err
    return summary


def test_failure_early_stopping_fires_at_the_threshold_not_before(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    values = [{"vals": "1", "code": c} for c in (0, 1, 0, 1, 0, 0)]
    spec = schedule_spec(write, values, "[{kind: failure_early_stopping, percent: 30}]")
    summary = run(cli, spec, tmp_path / "home")
    # 1 failure of 6 is 16.7% (< 30%): go on; the 2nd (33.3%) stops the sweep.
    assert [r["state"] for r in summary["runs"]] == ["succeeded", "failed", "succeeded", "failed"]
    assert summary["state"] == "stopped" and summary["code"] == 1
    assert "failure early stopping: 2 of 6 runs failed (33.3% >= 30%)" in summary["err"]


def test_metric_target_stops_the_sweep_the_moment_it_is_reached(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    values = [
        {"vals": "0.5,0.6,0.7,0.8,0.85,0.88"},
        {"vals": "0.6,0.89,0.90,0.95,0.96"},
        {"vals": "0.4,0.5,0.6,0.7,0.8,0.9"},
    ]
    spec = schedule_spec(
        write,
        values,
        "[{kind: metric_early_stopping, metric: accuracy, value: 0.9, optimization: maximize}]",
        concurrency=3,
        metric="accuracy",
    )
    summary = run(cli, spec, home)
    assert summary["code"] == 0 and summary["state"] == "succeeded"
    assert "run 1 reported accuracy = 0.9 (>= 0.9) at step 3" in summary["err"]
    states = {r["index"]: r for r in summary["runs"]}
    assert steps_reported(home, states[1]["id"]) == [1, 2, 3], "0.89 at step 2 did not fire"
    assert all(r["state"] == "stopped" for r in summary["runs"])
    assert len(steps_reported(home, states[0]["id"])) <= 4


def test_median_policy_stops_the_worse_run_at_the_evaluation_step(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    values = [
        {"vals": "1.0,0.8,0.6,0.5"},
        {"vals": "0.9,0.7,0.5,0.4"},
        {"vals": "1.2,1.1,1.0,0.9"},
        {"vals": "0.95,0.75,0.55,0.45"},
    ]
    rules = (
        "[{kind: metric_early_stopping, metric: loss, value: 0, optimization: minimize, "
        "policy: {kind: median, minInterval: 2, evaluationInterval: 1, minSamples: 2}}]"
    )
    summary = run(cli, schedule_spec(write, values, rules), home)
    by_index = {r["index"]: r for r in summary["runs"]}
    # Run 2: at step 1 no evaluation (minInterval 2); at step 2 its best 1.1 is worse than the
    # median 0.75 of runs 0 and 1 at step 2: stopped there, after exactly 2 reports.
    assert by_index[2]["state"] == "stopped"
    assert by_index[2]["reason"].startswith("early_stopped: median on loss at step 2")
    assert steps_reported(home, by_index[2]["id"]) == [1, 2]
    # Run 3 stays at or under the median (0.75 vs 0.7/0.8 -> 0.75): it runs to the end.
    assert by_index[3]["state"] == "succeeded" and by_index[1]["state"] == "succeeded"
    assert summary["state"] == "succeeded"


def test_diff_and_truncation_policies(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    values = [{"vals": "0.50,0.40,0.30"}, {"vals": "0.52,0.41,0.31"}, {"vals": "0.52,0.45,0.30"}]
    rules = (
        "[{kind: metric_early_stopping, metric: loss, value: 0, optimization: minimize, "
        "policy: {kind: diff, percent: 10, evaluationInterval: 1}}]"
    )
    summary = run(cli, schedule_spec(write, values, rules), home)
    # Run 1 stays within 10% of the best; run 2 at step 2: 0.45 > 0.40 * 1.1 = 0.44.
    assert [r["state"] for r in summary["runs"]] == ["succeeded", "succeeded", "stopped"]
    assert steps_reported(home, summary["runs"][2]["id"]) == [1, 2]
    truncate = (
        "[{kind: metric_early_stopping, metric: loss, value: 0, optimization: minimize,"
        " policy: {kind: truncation, percent: 50, evaluationInterval: 2, "
        "includeSucceeded: true}}]"
    )
    values = [
        {"vals": "0.5,0.4,0.3,0.2"},
        {"vals": "0.6,0.5,0.4,0.3"},
        {"vals": "0.4,0.45,0.28,0.25"},
    ]
    summary = run(cli, schedule_spec(write, values, truncate, pause=0.3), home)
    # Evaluated at steps 1 and 3 (every 2 from step 1); references are succeeded and running
    # runs (stopped ones are not). Run 1 at step 1: 0.6 is 2nd of 2, and 50% of 2 runs is 1
    # -> stopped after its first report. Run 2 at step 1: 0.4 beats run 0's 0.5; at step 3:
    # 0.28 beats 0.3 -> it runs to the end.
    assert [r["state"] for r in summary["runs"]] == ["succeeded", "stopped", "succeeded"]
    assert steps_reported(home, summary["runs"][1]["id"]) == [1]


def test_quickstart_early_stopping_stops_at_accuracy_0_9(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    result = cli(
        str(ROOT / "examples/quickstart/early_stopping.yaml"),
        "--json",
        "--home",
        str(tmp_path / "home"),
    )
    summary = json.loads(result.out)
    assert result.code == 0, result.err
    assert summary["state"] == "succeeded"
    hits = [r for r in summary["runs"] if r["metrics"].get("accuracy", 0) >= 0.9]
    assert hits, "some run reached the target"
    assert "reported accuracy = " in result.err
    assert len(summary["runs"]) < 20, "runs not yet started never started"


def test_timeout_fails_the_run_with_reason_timeout(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    spec = schedule_spec(
        write,
        [{"vals": "1,2,3,4,5,6,7,8,9,10"}],
        "[]",
        termination="termination: {timeout: 1, maxRetries: 3}",
        pause=0.5,
    )
    started = time.monotonic()
    summary = run(cli, spec, tmp_path / "home", "--grace", "1")
    (only,) = summary["runs"]
    assert (only["state"], only["reason"]) == ("failed", "timeout")
    assert time.monotonic() - started < 8
    assert summary["code"] == 1


def test_max_retries_retries_failures_and_journals_attempts(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home, counter = tmp_path / "home", tmp_path / "attempts"
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        "sys.exit(0 if n >= 2 else 1)"
    )
    spec = write(f"""
        version: 1.1
        kind: component
        termination: {{maxRetries: 2}}
        run: {{kind: job, container: {{command: ["{PY}", -c, "{code}"]}}}}
    """)
    summary = run(cli, spec, home)
    (only,) = summary["runs"]
    assert only["state"] == "succeeded"
    with sqlite3.connect(home / "journal.sqlite") as conn:
        story = list(
            conn.execute(
                "SELECT to_state, reason FROM transitions WHERE run_id = ? ORDER BY id",
                (only["id"],),
            )
        )
        (attempt,) = conn.execute("SELECT attempt FROM runs WHERE id = ?", (only["id"],)).fetchone()
    assert attempt == 3
    assert [s for s, _ in story].count("retrying") == 2
    assert ("retrying", "exit code 1; retry 1 of 2") in story
    assert story[-1] == ("succeeded", None)


def test_stopped_runs_are_not_retried_and_max_time_stops_the_sweep(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    spec = schedule_spec(
        write,
        [{"vals": ",".join(["1"] * 40)}, {"vals": "1"}],
        "[]",
        termination="termination: {maxRetries: 5}",
        pause=0.25,
    )
    started = time.monotonic()
    summary = run(cli, spec, tmp_path / "home", "--max-time", "1")
    assert time.monotonic() - started < 8
    assert summary["state"] == "stopped" and summary["code"] == 1
    assert [r["state"] for r in summary["runs"]] == ["stopped"]
    assert "the time budget of 1s is spent" in summary["err"]


def test_ttl_removes_working_files_and_keeps_the_journal(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = write(f"""
        version: 1.1
        kind: component
        termination: {{ttl: 0}}
        run:
          kind: job
          init: [{{file: {{filename: work.txt, content: scratch}}}}]
          container:
            workingDir: "{{{{ globals.artifacts_path }}}}"
            command: ["{PY}", -c, "print(1)"]
    """)
    summary = run(cli, spec, home)
    (only,) = summary["runs"]
    run_dir = home / "runs" / only["id"]
    assert not (run_dir / "artifacts").exists(), "working files removed after ttl"
    assert (run_dir / "stdout.log").read_text() == "1\n", "logs are kept"
    listed = json.loads(cli("show", "last", "--json", "--home", str(home)).out)
    assert listed["runs"][0]["state"] == "succeeded"
