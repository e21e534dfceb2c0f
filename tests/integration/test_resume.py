"""Crash-safe sweeps: kill -9 and resume, added configurations, rerun, history commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SCORE = (
    "import sys, json; print('a'); print('b'); "
    "print(json.dumps(dict(metrics=dict(score=int(sys.argv[1])))))"
)


def marker_spec(
    write: Callable[..., Path],
    marker: Path,
    n: int,
    *,
    hold: float = 0.1,
    name: str = "spec.yaml",
    extra: str = "",
) -> Path:
    values = ", ".join(f"{{i: {i}}}" for i in range(n))
    code = (
        f"import os, time; time.sleep({hold}); "
        f"open({str(marker)!r}, 'a')"
        ".write('{{ i }} ' + os.environ['ORCHESTRATOR_RUN_ID'] + chr(10))"
    )
    return write(
        f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, concurrency: 2, values: [{values}]}}
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "{code}"{extra}]}}}}
    """,
        name,
    )


def journal(home: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "journal.sqlite") as conn:
        return list(conn.execute(sql, params))


def test_kill_9_then_resume_runs_every_configuration_once(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "marker.txt", tmp_path / "home"
    spec = marker_spec(write, marker, 20, hold=0.2)
    proc = subprocess.Popen(
        # Not --json: with it, a stderr that is not a terminal gets no per-run lines.
        [PY, "-m", "orchestrator", str(spec), "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    enough = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        done = 0
        for line in proc.stderr:
            done += " succeeded" in line
            if done >= 6:
                enough.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert enough.wait(60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    watcher.join(30)
    assert proc.stderr is not None
    proc.stderr.close()

    result = cli("resume", "last", "--json", "--home", str(home))
    assert result.code == 0, result.err
    assert "recovered: sweep" in result.err
    summary = json.loads(result.out)
    assert summary["state"] == "succeeded"
    assert sorted(r["params"]["i"] for r in summary["runs"]) == list(range(20))
    assert {r["state"] for r in summary["runs"]} == {"succeeded"}

    succeeded = {row[0] for row in journal(home, "SELECT id FROM runs WHERE state = 'succeeded'")}
    lines = [line.split() for line in marker.read_text().splitlines()]
    counted = Counter(int(i) for i, run_id in lines if run_id in succeeded)
    assert counted == Counter(range(20)), "every configuration succeeded exactly once"
    # Runs in flight at the kill are settled by recovery: lost (killed by their supervisor),
    # or succeeded from the exit status it wrote when they had just finished.
    settled = journal(
        home,
        "SELECT count(*) FROM runs WHERE reason IN ('orchestrator_lost', 'recovered_exit_status')",
    )
    assert settled != [(0,)], "the runs in flight at the kill are settled by recovery"
    story = [
        row[0]
        for row in journal(
            home, "SELECT to_state FROM transitions WHERE run_id IS NULL ORDER BY id"
        )
    ]
    assert story == ["running", "failed", "running", "succeeded"]


def test_resume_after_adding_two_entries_runs_only_those(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "marker.txt", tmp_path / "home"
    spec = marker_spec(write, marker, 3, hold=0)
    first = cli(str(spec), "--json", "--home", str(home))
    assert first.code == 0, first.err
    sweep = json.loads(first.out)["sweep"]
    marker_spec(write, marker, 5, hold=0)  # the same file, two entries more
    result = cli("resume", sweep[:8], "--json", "--home", str(home))
    assert result.code == 0, result.err
    ran = [int(line.split()[0]) for line in marker.read_text().splitlines()]
    assert sorted(ran) == [0, 1, 2, 3, 4]
    summary = json.loads(result.out)
    assert summary["sweep"] == sweep
    assert [r["params"]["i"] for r in summary["runs"]] == [0, 1, 2, 3, 4]
    nothing = cli("resume", "last", "--json", "--home", str(home))
    assert nothing.code == 0
    assert len(marker.read_text().splitlines()) == 5, "resuming a finished sweep runs nothing"


def test_changed_component_is_refused_unless_forced(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "marker.txt", tmp_path / "home"
    spec = marker_spec(write, marker, 2, hold=0)
    assert cli(str(spec), "--home", str(home)).code == 0
    marker_spec(write, marker, 3, hold=0, extra=", --changed")
    refused = cli("resume", "last", "--home", str(home))
    assert refused.code == 2
    assert "the component changed" in refused.err and "--force" in refused.err
    forced = cli("resume", "last", "--force", "--json", "--home", str(home))
    assert forced.code == 0, forced.err
    assert len(marker.read_text().splitlines()) == 3


def test_rerun_failed_and_stopped(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home, flag = tmp_path / "home", tmp_path / "fail-odd"
    flag.write_text("x")
    code = (
        f"import os, sys; sys.exit(1 if {{{{ i }}}} % 2 and os.path.exists({str(flag)!r}) else 0)"
    )
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{i: 0}}, {{i: 1}}, {{i: 2}}, {{i: 3}}]}}
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "{code}"]}}}}
    """)
    first = cli(str(spec), "--json", "--home", str(home))
    assert first.code == 1
    assert [r["state"] for r in json.loads(first.out)["runs"]] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
    ]
    assert cli("rerun", "last", "--home", str(home)).code == 2, "needs --failed or --stopped"
    flag.unlink()
    again = cli("rerun", "last", "--failed", "--json", "--home", str(home))
    assert again.code == 0, again.err
    runs = json.loads(again.out)["runs"]
    assert [r["state"] for r in runs] == ["succeeded"] * 4
    attempts = journal(home, "SELECT idx, count(*) FROM runs GROUP BY idx ORDER BY idx")
    assert attempts == [(0, 1), (1, 2), (2, 1), (3, 2)]
    stopped = cli("rerun", "last", "--stopped", "--json", "--home", str(home))
    assert stopped.code == 0, stopped.err
    assert "(0 to re-run)" in stopped.err
    after = json.loads(stopped.out)
    assert after["state"] == "succeeded"
    assert [(r["id"], r["state"]) for r in after["runs"]] == [(r["id"], r["state"]) for r in runs]
    assert journal(home, "SELECT idx, count(*) FROM runs GROUP BY idx ORDER BY idx") == attempts, (
        "nothing was stopped, so no configuration runs again"
    )


def test_history_commands(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = tmp_path / "home"
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{x: 3}}, {{x: 1}}, {{x: 2}}]}}
        component:
          inputs: [{{name: x, type: int}}]
          outputs: [{{name: score, type: float}}]
          run:
            kind: job
            container:
              command: ["{PY}", -c, "{SCORE}", "{{{{ x }}}}"]
    """)
    run = cli(str(spec), "--json", "--home", str(home), "--name", "hist")
    assert run.code == 0, run.err
    sweep = json.loads(run.out)["sweep"]
    listing = cli("ls", "--json", "--home", str(home))
    (item,) = json.loads(listing.out)
    assert (item["id"], item["name"], item["state"], item["counts"]) == (
        sweep,
        "hist",
        "succeeded",
        {"succeeded": 3},
    )
    table = cli("ls", "--home", str(home))
    assert sweep[:12] in table.out and "3 succeeded" in table.out
    shown = json.loads(cli("show", "last", "--json", "--sort=-score", "--home", str(home)).out)
    assert [r["outputs"]["score"] for r in shown["runs"]] == [3.0, 2.0, 1.0]
    csv_text = cli("show", sweep[:6], "--csv", "--sort", "score", "--home", str(home)).out
    assert csv_text.splitlines()[0] == "index,id,state,reason,duration_s,cpu_s,max_rss,x,score"
    assert [line.split(",")[7] for line in csv_text.splitlines()[1:]] == ["1", "2", "3"]
    logs = cli("logs", "last:0", "--home", str(home))
    assert logs.out.splitlines()[:2] == ["a", "b"]
    assert cli("logs", "last:0", "--tail", "1", "--home", str(home)).out.startswith('{"metrics"')
    missing = cli("show", "nope", "--home", str(home))
    assert missing.code == 2 and "no sweep matches 'nope'" in missing.err
    assert cli("logs", "last:9", "--home", str(home)).code == 2
    assert cli("ls", "--home", str(tmp_path / "empty")).code == 2


def test_logs_follow_a_run_another_process_executes(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    home, gate = tmp_path / "home", tmp_path / "gate.fifo"
    os.mkfifo(gate)
    code = (
        f"g = open({str(gate)!r}); print('first', flush=True); g.read(); "
        "[print(f'line {n}', flush=True) for n in range(50)]"
    )
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", -c, "{code}"]}}}}
    """)
    runner = subprocess.Popen(
        [PY, "-m", "orchestrator", str(spec), "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert runner.stderr is not None
    for line in runner.stderr:
        if line.split()[1:2] == ["running"]:
            break
    follower = subprocess.Popen(
        [PY, "-m", "orchestrator", "logs", "last:0", "-f", "--home", str(home)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    with open(gate, "w") as g:  # the run goes on only once the follower is attached
        g.write("go")
    out, _ = follower.communicate(timeout=60)
    runner.communicate(timeout=60)
    assert runner.returncode == 0
    assert out.splitlines() == ["first"] + [f"line {n}" for n in range(50)]


def test_two_orchestrators_share_one_home(write: Callable[..., Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    specs = [
        marker_spec(write, tmp_path / f"m{k}.txt", 6, hold=0.05, name=f"s{k}.yaml")
        for k in range(2)
    ]
    procs = [
        subprocess.Popen(
            [PY, "-m", "orchestrator", str(s), "--json", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        for s in specs
    ]
    results = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert {json.loads(r)["state"] for r in results} == {"succeeded"}
    assert journal(home, "PRAGMA integrity_check") == [("ok",)]
    assert journal(home, "SELECT count(*) FROM runs WHERE state = 'succeeded'") == [(12,)]


def test_unusable_home_gives_a_clear_error(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    spec = marker_spec(write, tmp_path / "m.txt", 1, hold=0)
    result = cli(str(spec), "--home", str(blocker / "home"))
    assert result.code == 2
    assert result.err.startswith("orchestrator: cannot open the journal at")
    assert "Traceback" not in result.err and result.err.count("\n") == 1


def test_run_resume_continues_the_newest_sweep_of_the_spec(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "marker.txt", tmp_path / "home"
    spec = marker_spec(write, marker, 2, hold=0)
    first = json.loads(cli(str(spec), "--json", "--home", str(home)).out)
    marker_spec(write, marker, 3, hold=0)
    again = cli("run", str(spec), "--resume", "--json", "--home", str(home))
    assert again.code == 0, again.err
    assert json.loads(again.out)["sweep"] == first["sweep"]
    assert len(marker.read_text().splitlines()) == 3
    other = write(spec.read_text(), "other.yaml")
    fresh = json.loads(cli("run", str(other), "--resume", "--json", "--home", str(home)).out)
    assert fresh["sweep"] != first["sweep"], "no sweep of that spec yet: a new one starts"


def test_journal_failure_mid_sweep_is_one_line(
    write: Callable[..., Path],
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.journal_faults import DiskFull, run_state_is

    DiskFull(trigger=run_state_is("running")).install(monkeypatch)
    spec = marker_spec(write, tmp_path / "m.txt", 2, hold=0)
    result = cli(str(spec), "--home", str(tmp_path / "home"))
    assert result.code == 1, "the sweep failed: it could not be journaled to the end"
    assert result.err.splitlines()[-1] == (
        "orchestrator: journal write failed: database or disk is full"
    )
    assert result.out.splitlines()[-1].endswith(
        "failed (journal write failed: database or disk is full)"
    )
    assert "Traceback" not in result.err


def test_a_rerun_of_the_failed_runs_of_a_sweep_stopped_early_does_not_end_it_succeeded(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Early stopping ended the sweep after its first run failed; ``rerun --failed`` runs that
    one again and it succeeds, but three configurations never ran: the sweep is not done,
    and says so, until ``resume`` runs them."""
    home, flag = tmp_path / "home", tmp_path / "fail"
    flag.write_text("x")
    code = f"import os, sys; sys.exit(1 if os.path.exists({str(flag)!r}) else 0)"
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          concurrency: 1
          values: [{{i: 0}}, {{i: 1}}, {{i: 2}}, {{i: 3}}]
          earlyStopping: [{{kind: failure_early_stopping, percent: 10}}]
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "{code}", "{{{{ i }}}}"]}}}}
    """)
    first = cli(str(spec), "--json", "--home", str(home))
    assert first.code == 1, first.err
    assert [r["state"] for r in json.loads(first.out)["runs"]] == ["failed"]
    flag.unlink()
    again = cli("rerun", "last", "--failed", "--json", "--home", str(home))
    summary = json.loads(again.out)
    assert [r["state"] for r in summary["runs"]] == ["succeeded"]
    assert (summary["state"], summary["reason"]) == (
        "stopped",
        "3 of 4 configurations never ran (resume runs them)",
    )
    assert again.code == 1
    rest = cli("resume", "last", "--json", "--home", str(home))
    assert rest.code == 0, rest.err
    done = json.loads(rest.out)
    assert done["state"] == "succeeded"
    assert [r["state"] for r in done["runs"]] == ["succeeded"] * 4
