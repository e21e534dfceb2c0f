"""The MLflow and TensorBoard trackers: opt-in plugins, run through the CLI on real
subprocesses that print metric lines, read back with each tool's own reader."""

from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.plugin_host import ENABLE_ENV, ENTRY_POINT_GROUP, PluginHost
from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = ROOT / "tests" / "components" / "schedule.py"
PY = sys.executable
TRACKERS = {
    "mlflow": "orchestrator_plugins.mlflow_tracker:plugin",
    "tensorboard": "orchestrator_plugins.tensorboard_tracker:plugin",
}


@pytest.fixture
def trackers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trackers' entry points, as an install with them declared leaves them (added only
    where this checkout's install does not declare them yet)."""
    monkeypatch.delenv(ENABLE_ENV, raising=False)
    have = {e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    missing = {name: target for name, target in TRACKERS.items() if name not in have}
    if not missing:
        return
    dist = tmp_path / "site" / "orchestrator_trackers_test-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: orchestrator-trackers-test\nVersion: 0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in missing.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def sweep_spec(write: Callable[..., Path]) -> Path:
    """Two runs: one reports loss at steps 1-3 and succeeds, one at steps 1-2 and fails."""
    values = [
        {"vals": "0.9,0.5,0.2", "code": 0, "lr": 0.1},
        {"vals": "0.8,0.6", "code": 3, "lr": 0.01},
    ]
    return write(f"""
        version: 1.1
        kind: operation
        name: trk
        matrix:
          kind: mapping
          concurrency: 2
          values: {json.dumps(values)}
        component:
          inputs:
            - {{name: vals, type: str}}
            - {{name: code, type: int}}
            - {{name: lr, type: float}}
          run:
            kind: job
            container:
              command: ["{PY}", "{SCHEDULE}", loss, "{{{{ vals }}}}", "0", "{{{{ code }}}}",
                        "{{{{ lr }}}}"]
    """)


def run(cli: Callable[..., CliResult], spec: Path, home: Path, *extra: str) -> dict[str, Any]:
    result = cli(str(spec), "--json", "--home", str(home), *extra)
    assert result.code == 1, result.err  # one run fails
    summary: dict[str, Any] = json.loads(result.out)
    summary["err"] = result.err
    return summary


# ---------------------------------------------------------------------- opt-in
def test_trackers_are_off_unless_named(trackers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    default = PluginHost.installed(io.StringIO())
    assert not set(TRACKERS) & set(default.loaded)
    assert set(TRACKERS) <= set(default.opt_in_off)
    assert {"cache", "early_stopping"} <= set(default.loaded)

    named = PluginHost.installed(io.StringIO(), allow=["mlflow"])
    assert set(named.loaded) == {"mlflow"}

    monkeypatch.setenv(ENABLE_ENV, "tensorboard, mlflow")
    configured = PluginHost.installed(io.StringIO(), deny=["mlflow"])
    assert "tensorboard" in configured.loaded and "cache" in configured.loaded
    assert "mlflow" not in configured.loaded  # --no-plugin still wins


def test_a_sweep_without_trackers_writes_nothing_of_theirs(
    trackers: None, cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    run(cli, sweep_spec(write), home)
    assert not (home / "mlruns").exists() and not (home / "tensorboard").exists()


# ---------------------------------------------------------------------- MLflow
def mlflow_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLflow settings from the environment: the tracker's defaults (the home's own
    store); what the plugin sets is restored after the test."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_mlflow_tracker_writes_a_parent_and_a_child_per_configuration(
    trackers: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    mlflow_defaults(monkeypatch)
    home = tmp_path / "home"
    summary = run(cli, sweep_spec(write), home, "--plugin", "mlflow")
    assert "plugin" not in summary["err"], summary["err"]

    store = home / "mlruns"
    assert store.is_dir()  # the default: the home's own store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    runs = mlflow.search_runs(experiment_names=["trk"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("orchestrator.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["orchestrator.sweep_id"] == summary["sweep"]
    assert parent.data.tags["orchestrator.state"] == "failed"
    assert parent.info.status == "FAILED"

    children = {
        r.data.params["lr"]: r for r in runs if r.data.tags.get("orchestrator.kind") == "run"
    }
    assert set(children) == {"0.1", "0.01"}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    good, bad = children["0.1"], children["0.01"]
    assert good.data.params == {"vals": "0.9,0.5,0.2", "code": "0", "lr": "0.1"}
    assert (good.data.tags["orchestrator.state"], good.info.status) == ("succeeded", "FINISHED")
    assert (bad.data.tags["orchestrator.state"], bad.info.status) == ("failed", "FAILED")
    assert bad.data.tags["orchestrator.exit_code"] == "3"
    assert bad.data.tags["orchestrator.reason"]

    client = mlflow.MlflowClient()
    history = client.get_metric_history(good.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.9), (2, 0.5), (3, 0.2)]
    assert [(m.step, m.value) for m in client.get_metric_history(bad.info.run_id, "loss")] == [
        (1, 0.8),
        (2, 0.6),
    ]


def test_mlflow_runs_carry_the_provenance_show_prints(
    trackers: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code (commit, dirty), interpreter, packages and machine a run ran with are tags of
    the sweep's MLflow run and of each configuration's, the same values ``show`` reads."""
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    mlflow_defaults(monkeypatch)
    spec = sweep_spec(write)
    git = ["git", "-C", str(spec.parent), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", spec.name], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "spec"], check=True)
    (spec.parent / "notes.txt").write_text("uncommitted\n")  # the folder is now dirty
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    home = tmp_path / "home"
    summary = run(cli, spec, home, "--plugin", "mlflow")
    shown = cli("show", f"{summary['sweep']}:0", "--json", "--home", str(home))
    provenance = json.loads(shown.out)["provenance"]
    assert provenance["git_commit"] == commit.stdout.strip()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (home / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["trk"], output_format="list")
    assert len(runs) == 3
    for tracked in runs:
        tags = tracked.data.tags
        assert tags["orchestrator.git.commit"] == provenance["git_commit"]
        assert tags["mlflow.source.git.commit"] == provenance["git_commit"]
        assert tags["orchestrator.git.dirty"] == "true"
        assert tags["orchestrator.git.diff_hash"] == provenance["diff_hash"]
        assert tags["orchestrator.packages_hash"] == provenance["packages_hash"]
        assert tags["orchestrator.host"] == provenance["host"] == socket.gethostname()
        assert tags["orchestrator.python_version"] == provenance["python_version"]
        assert tags["orchestrator.cwd"] == provenance["cwd"]


def test_an_unreachable_tracking_server_is_reported_and_the_sweep_goes_on(
    trackers: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknown-scheme://nowhere")
    summary = run(cli, sweep_spec(write), tmp_path / "home", "--plugin", "mlflow")
    assert [r["state"] for r in summary["runs"]] == ["succeeded", "failed"]
    assert "plugin 'mlflow'" in summary["err"] and "switched off" in summary["err"]


# ---------------------------------------------------------------------- TensorBoard
def test_tensorboard_tracker_writes_scalars_and_the_hparams_summary(
    trackers: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard (the viewer, to read the files back) is not installed",
    )
    from tensorboard.plugins.hparams import plugin_data_pb2

    monkeypatch.setenv(ENABLE_ENV, "tensorboard")  # the configuration, with the default plugins
    home = tmp_path / "home"
    summary = run(cli, sweep_spec(write), home)
    assert "plugin" not in summary["err"], summary["err"]
    logdir = home / "tensorboard" / summary["sweep"]

    def load(folder: Path) -> Any:
        acc = accumulator.EventAccumulator(str(folder))
        acc.Reload()
        return acc

    def hparams(acc: Any) -> dict[str, Any]:
        return {
            tag: plugin_data_pb2.HParamsPluginData.FromString(content)
            for tag, content in acc.PluginTagToContent("hparams").items()
        }

    runs = {0: ([(1, 0.9), (2, 0.5), (3, 0.2)], 1), 1: ([(1, 0.8), (2, 0.6)], 2)}
    for index, (points, status) in runs.items():
        acc = load(logdir / str(index))
        scalars = [(e.step, round(e.value, 6)) for e in acc.Scalars("loss")]
        assert scalars == points
        data = hparams(acc)
        start = data["_hparams_/session_start_info"].session_start_info
        assert start.hparams["lr"].number_value == pytest.approx([0.1, 0.01][index])
        assert start.hparams["vals"].string_value == ["0.9,0.5,0.2", "0.8,0.6"][index]
        assert data["_hparams_/session_end_info"].session_end_info.status == status

    experiment = hparams(load(logdir))["_hparams_/experiment"].experiment
    assert {h.name for h in experiment.hparam_infos} == {"vals", "code", "lr"}
    assert [m.name.tag for m in experiment.metric_infos] == ["loss"]


def test_a_resumed_sweep_logs_under_the_same_parent(
    trackers: None,
    cli: Callable[..., CliResult],
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())  # the user's own
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    home = tmp_path / "home"
    first = run(cli, sweep_spec(write), home, "--plugin", "mlflow")
    again = cli("resume", first["sweep"], "--json", "--home", str(home), "--plugin", "mlflow")
    assert again.code == 1 and "plugin" not in again.err, again.err
    assert not (home / "mlruns").exists()

    runs = mlflow.search_runs(experiment_names=["mine"], output_format="list")
    kinds = sorted(r.data.tags["orchestrator.kind"] for r in runs)
    assert kinds == ["run", "run", "run", "sweep"]  # the failed configuration ran twice
    parent = next(r for r in runs if r.data.tags["orchestrator.kind"] == "sweep")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs if r != parent} == {parent.info.run_id}
    retried = [r for r in runs if r.data.params.get("lr") == "0.01"]
    assert [r.data.tags["orchestrator.state"] for r in retried] == ["failed", "failed"]


def test_an_enabled_plugin_that_is_not_installed_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENABLE_ENV, "nosuchtracker")
    err = io.StringIO()
    host = PluginHost.installed(err)
    assert "cache" in host.loaded
    assert "plugin 'nosuchtracker'" in err.getvalue()
    assert "is not installed" in err.getvalue()
