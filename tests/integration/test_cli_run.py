"""The real ``orchestrator run`` process: the quick-start, JSON summaries, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult, StaticHandler

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "tests" / "components"
PY = sys.executable
OUTPUT = COMPONENTS / "output.py"


def test_quickstart_runs_offline_with_outputs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            PY,
            "-m",
            "orchestrator",
            "examples/quickstart/mapping.yaml",
            "--json",
            "--home",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["state"] == "succeeded"
    assert [r["params"]["learning_rate"] for r in summary["runs"]] == [0.001, 0.01]
    assert [r["params"]["conv_activation"] for r in summary["runs"]] == ["relu", "sigmoid"]
    for run in summary["runs"]:
        assert set(run["outputs"]) == {"loss", "accuracy"}
        assert 0 < run["outputs"]["accuracy"] <= 1
        assert run["state"] == "succeeded" and run["exit_code"] == 0
        assert run["duration_s"] > 0
    with sqlite3.connect(tmp_path / "journal.sqlite") as conn:
        (state,) = conn.execute(
            "SELECT state FROM sweeps WHERE id = ?", (summary["sweep"],)
        ).fetchone()
    assert state == "succeeded"


def test_spec_run_and_run_f_are_the_same(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", -c, "print('hi')"]}}}}
    """)
    for args in (
        [str(spec)],
        ["run", str(spec)],
        ["run", "-f", str(spec)],
        ["--home", str(tmp_path / "h"), str(spec)],
    ):
        result = cli(*args, "--json", "--home", str(tmp_path / "h"))
        assert result.code == 0, result.err
        assert json.loads(result.out)["state"] == "succeeded"


def test_failed_run_exits_1_and_shows_stderr_at_once(
    cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", "{OUTPUT}", exit, "4"]}}}}
    """)
    result = cli(str(spec), "--home", str(tmp_path))
    assert result.code == 1
    assert "failed    (exit code 4)" in result.err
    assert "      | failing now" in result.err
    assert "sweep " in result.out and " failed (1 of 1 runs failed)" in result.out


def test_bad_spec_exits_2(cli: Callable[..., CliResult], write: Callable[..., Path]) -> None:
    result = cli(str(write("version: 1.1\nkind: operation\n")))
    assert result.code == 2
    assert "one and only one" in result.err
    assert cli("run").code == 2
    assert cli("run", "a.yaml", "-f", "b.yaml").code == 2
    assert cli("run", "a.yaml", "--concurrency", "0").code == 2


class _Watcher:
    """Reads the CLI's stderr in a thread and sets events as lines arrive."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.running = threading.Event()
        self.stopping = threading.Event()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            if line.split()[1:2] == ["running"]:
                self.running.set()
            if "stopping the sweep" in line:
                self.stopping.set()


def _start(
    args: list[str],
    procs: list[subprocess.Popen[str]],
) -> tuple[subprocess.Popen[str], _Watcher]:
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc, _Watcher(proc)


def test_ctrl_c_stops_the_sweep(
    write: Callable[..., Path], tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    # With --json and stderr not a terminal, no "running" line is printed: the child says
    # it runs through a FIFO instead.
    ready = tmp_path / "ready.fifo"
    os.mkfifo(ready)
    child = f"import time; open({str(ready)!r}, 'w').write('x'); time.sleep(600)"
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, concurrency: 1, values: [{{i: 1}}, {{i: 2}}, {{i: 3}}]}}
        component:
          run: {{kind: job, container: {{command: ["{PY}", -c, "{child}"]}}}}
    """)
    proc, watch = _start(["run", str(spec), "--json", "--home", str(tmp_path / "h")], procs)
    signalled = threading.Event()

    def wait_ready() -> None:
        ready.read_text()
        signalled.set()

    threading.Thread(target=wait_ready, daemon=True).start()
    assert signalled.wait(30), "".join(watch.lines)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    summary = json.loads(out)
    assert summary["state"] == "stopped"
    assert [r["state"] for r in summary["runs"]] == ["stopped"]
    assert summary["runs"][0]["reason"] == "interrupted (SIGINT)"


def test_second_ctrl_c_kills_at_once(
    write: Callable[..., Path], tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    ready = tmp_path / "ready.fifo"
    os.mkfifo(ready)
    child = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(ready)!r}, 'w').write('x'); time.sleep(600)"
    )
    spec = write(f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", -c, "{child}"]}}}}
    """)
    proc, watch = _start(
        ["run", str(spec), "--json", "--grace", "300", "--home", str(tmp_path / "h")], procs
    )
    # The child says it ignores SIGTERM through a FIFO: no polling, no race.
    signalled = threading.Event()

    def wait_ready() -> None:
        ready.read_text()
        signalled.set()

    threading.Thread(target=wait_ready, daemon=True).start()
    assert signalled.wait(30), "".join(watch.lines)
    proc.send_signal(signal.SIGINT)
    assert watch.stopping.wait(30), "".join(watch.lines)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    summary = json.loads(out)
    assert proc.returncode == 1
    assert summary["runs"][0]["state"] == "stopped"
    assert summary["runs"][0]["exit_code"] == -9


def test_run_url_with_name_and_tags(
    cli: Callable[..., CliResult], server: str, tmp_path: Path
) -> None:
    StaticHandler.routes["/sweep.yaml"] = (
        200,
        f"""
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{{n: 1}}, {{n: 2}}]}}
component:
  inputs: [{{name: n, type: int}}]
  run: {{kind: job, container: {{command: ["{PY}", -c, "print({{{{ n }}}})"]}}}}
""".encode(),
    )
    home = tmp_path / "home"
    result = cli(
        "run",
        "--url",
        f"{server}/sweep.yaml",
        "--name",
        "from-url",
        "--tags",
        "a, b",
        "--description",
        "fetched",
        "--eager",
        "--json",
        "--home",
        str(home),
    )
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert [r["params"]["n"] for r in summary["runs"]] == [1, 2]
    with sqlite3.connect(home / "journal.sqlite") as conn:
        row = conn.execute("SELECT name, tags, description, spec_path FROM sweeps").fetchone()
    assert row == ("from-url", '["a", "b"]', "fetched", f"{server}/sweep.yaml")
    missing = cli("run", "--url", f"{server}/nope.yaml", "--home", str(home))
    assert missing.code == 2
    assert "--url: fetching" in missing.err and "HTTP 404" in missing.err
