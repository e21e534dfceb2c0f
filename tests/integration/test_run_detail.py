"""One run in full (``show SWEEP:INDEX``, ``show --run RUN``) and ``diff RUN RUN``, from the
journal and through the daemon's API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.integration.test_daemon import Daemon, daemon, sse

__all__ = ["daemon"]  # the fixture, used by name

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: mapping
  values: [{{n: 1}}, {{n: 2}}]
component:
  inputs: [{{name: n, type: int}}]
  outputs: [{{name: loss, type: float}}]
  run:
    kind: job
    container:
      command: ["{python}", "-c", "{script}"]
"""
SCRIPT = (
    "import sys; from orchestrator.tracking import log_metrics; n = {{ n }}; "
    "[log_metrics(step=s, loss=s / n) for s in (3, 1, 2)]; sys.exit(n - 1)"
)


def _sweep(cli: Callable[..., CliResult], tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "two.yaml"
    spec.write_text(SPEC.format(python=sys.executable, script=SCRIPT))
    assert cli("run", str(spec), "--home", str(home)).code == 1  # n=2 exits 1


def test_show_one_run_in_full(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    home = tmp_path / "home"
    _sweep(cli, tmp_path, home)
    shown = cli("show", "last:1", "--home", str(home), "--json")
    assert shown.code == 0, shown.err
    run = json.loads(shown.out)
    assert (run["index"], run["state"], run["reason"], run["exit_code"]) == (
        1,
        "failed",
        "exit code 1",
        1,
    )
    assert run["params"] == {"n": 2} and run["outputs"] == {"loss": 1.0}
    assert run["metrics"] == {"loss": {"last": 1.0, "min": 0.5, "max": 1.5, "reports": 3}}
    assert [s["to"] for s in run["states"]] == [
        "created",
        "queued",
        "starting",
        "running",
        "failed",
    ]
    assert run["states"][-1]["reason"] == "exit code 1"
    assert Path(run["paths"]["stdout"]).read_text().count("metrics") == 3
    by_id = cli("show", "--run", run["run"][:10], "--home", str(home), "--json")
    assert json.loads(by_id.out) == run
    text = cli("show", "last:1", "--home", str(home)).out
    assert "failed (exit code 1)" in text and "last 1.0, min 0.5, max 1.5 (3 reports)" in text
    assert cli("show", "--home", str(home)).code == 2
    assert cli("show", "last:7", "--home", str(home)).code == 2


def test_diff_two_runs(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    home = tmp_path / "home"
    _sweep(cli, tmp_path, home)
    result = cli("diff", "last:0", "last:1", "--home", str(home), "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["differs"]["params"] == {"n": [1, 2]}
    assert body["differs"]["outputs"] == {"loss": [2.0, 1.0]}
    assert "argv" in body
    text = cli("diff", "last:0", "last:1", "--home", str(home)).out
    assert "params.n: 1 → 2" in text
    same = cli("diff", "last:0", "last:0", "--home", str(home)).out
    assert same.endswith("no differences\n")


def test_the_daemon_answers_for_one_run_and_a_diff(daemon: Daemon, tmp_path: Path) -> None:
    text = SPEC.format(python=sys.executable, script=SCRIPT)
    with daemon.unix() as client:
        sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
        with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as events:
            for kind, data in sse(events):
                if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                    break
        run = client.get(f"/api/v1/runs/{sweep}:1").json()
        assert run["state"] == "failed" and run["metrics"]["loss"]["reports"] == 3
        diff = client.get(f"/api/v1/runs/{sweep}:0/diff", params={"with": f"{sweep}:1"}).json()
        assert diff["differs"]["params"] == {"n": [1, 2]}
        assert client.get(f"/api/v1/runs/{sweep}:0/diff").status_code == 400
