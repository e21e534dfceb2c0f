"""Resource slots through the whole engine: a fake ``nvidia-smi`` on ``PATH`` prints four cards
(8, 16, 24 and 80 GiB); real runs record the ``CUDA_VISIBLE_DEVICES`` they were given and when
they started and ended, and the checks are made from those records, not from our bookkeeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import httpx
import pytest

from orchestrator.store.layout import daemon_info_path
from tests.daemon_process import daemon_process, ready_daemon
from tests.fake_gpus import CARDS, fake_smi, overcommits

ROOT = Path(__file__).resolve().parents[2]

#: A run: records what it was given, then (with a barrier) waits until ``expected`` runs have
#: recorded theirs, which proves they all ran at once; exits with ``code``.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    folder, name, expected, code = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    record = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "share": os.environ.get("ORCHESTRATOR_GPU_SHARE"), "start": time.monotonic()}
    with open(os.path.join(folder, name + ".start"), "w") as f:
        json.dump(record, f)
    deadline = time.monotonic() + 60
    while expected and time.monotonic() < deadline:
        if sum(n.endswith(".start") for n in os.listdir(folder)) >= expected:
            break
        time.sleep(0.01)
    record["end"] = time.monotonic()
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump(record, f)
    sys.exit(code)
""")


def _spec(tmp_path: Path, runs: int, limits: str, *, barrier: int = 0, code: int = 0) -> Path:
    records = tmp_path / "records"
    records.mkdir()
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          concurrency: {runs}
          values: {json.dumps([{"i": i} for i in range(runs)])}
        component:
          inputs: [{{name: i, type: int}}]
          run:
            kind: job
            container:
              command: [{sys.executable}, {child}, {records}, "r{{{{ i }}}}", "{barrier}", "{code}"]
              resources: {{limits: {limits}}}
        """)
    )
    return spec


def _orchestrator(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = env if env is not None else fake_smi(tmp_path / "bin")
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def _records(tmp_path: Path) -> list[dict[str, object]]:
    folder = tmp_path / "records"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_half_cards_pack_two_to_a_card_and_never_more(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 8, "{nvidia.com/gpu: 0.5}", barrier=8)
    proc = _orchestrator(tmp_path, "run", str(spec), "--json")
    assert proc.returncode == 0, proc.stderr
    records = _records(tmp_path)
    assert len(records) == 8
    # All eight ran at once (the barrier), two on each card, each told its share.
    assert Counter(str(r["cvd"]) for r in records) == {uuid: 2 for _, uuid, _, _ in CARDS}
    assert {r["share"] for r in records} == {"0.5"}
    assert overcommits(records) == []
    runs = json.loads(proc.stdout)["runs"]
    assert all(run["resources"]["gpus"] for run in runs)


def test_runs_that_need_big_cards_land_only_on_big_cards(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 6, "{nvidia.com/gpu: 1, orchestrator/gpu-memory: 20Gi}")
    proc = _orchestrator(tmp_path, "run", str(spec))
    assert proc.returncode == 0, proc.stderr
    records = _records(tmp_path)
    assert len(records) == 6
    big = {uuid for _, uuid, _, mib in CARDS if mib >= 20 * 1024}
    assert {str(r["cvd"]) for r in records} <= big
    assert overcommits(records) == []


def test_failed_runs_give_their_cards_back(tmp_path: Path) -> None:
    # Two cards each, four cards: two at a time; a card kept by a failed run would hang it.
    spec = _spec(tmp_path, 6, "{nvidia.com/gpu: 2}", code=3)
    proc = _orchestrator(tmp_path, "run", str(spec), "--json")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert [run["state"] for run in summary["runs"]] == ["failed"] * 6
    records = _records(tmp_path)
    assert all(len(str(r["cvd"]).split(",")) == 2 for r in records)
    assert overcommits(records) == []
    shown = _orchestrator(tmp_path, "show", "last", "--json")
    assert shown.returncode == 0, shown.stderr
    assert all(len(run["resources"]["gpus"]) == 2 for run in json.loads(shown.stdout)["runs"])


def test_a_sweep_that_can_never_fit_is_refused_before_anything_runs(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 2, "{nvidia.com/gpu: 5}")
    proc = _orchestrator(tmp_path, "run", str(spec))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run.container.resources" in lines[0], proc.stderr
    assert "5 GPUs" in lines[0] and "4" in lines[0]
    assert _records(tmp_path) == []
    listed = _orchestrator(tmp_path, "ls", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout


def test_runs_that_ask_for_no_gpu_see_none_and_gpus_none_leaves_devices_alone(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, 1, "{cpu: 100m}")
    proc = _orchestrator(tmp_path, "run", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert [r["cvd"] for r in _records(tmp_path)] == [""]
    for record in (tmp_path / "records").iterdir():
        record.unlink()
    env = {**fake_smi(tmp_path / "bin"), "CUDA_VISIBLE_DEVICES": "7"}
    proc = _orchestrator(tmp_path, "run", str(spec), "--nocache", "--gpus", "none", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [r["cvd"] for r in _records(tmp_path)] == ["7"]


@pytest.mark.parametrize("option", ["--gpus=0,9", "--cpus=lots", "--memory=-1Gi"])
def test_bad_resource_options_are_one_line_errors(tmp_path: Path, option: str) -> None:
    spec = _spec(tmp_path, 1, "{cpu: 1}")
    proc = _orchestrator(tmp_path, "run", str(spec), option)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and option.split("=")[0] in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path / "records") == []


def test_the_daemon_shares_one_inventory_across_sweeps(tmp_path: Path) -> None:
    """Two sweeps submitted to one daemon that may use two cards: their runs never share a
    card, the API tells each run's devices, and a sweep that can never fit is refused."""
    env = fake_smi(tmp_path / "bin")

    def start(home: Path) -> subprocess.Popen[str]:
        args = ["--home", str(home), "--max-runs", "8", "--gpus", "0,1"]
        return ready_daemon(args, cwd=ROOT, env=env)

    with daemon_process(start, stop_timeout=20) as (home, _):
        socket = json.loads(daemon_info_path(home).read_text())["socket"]
        transport = httpx.HTTPTransport(uds=socket)
        with httpx.Client(transport=transport, base_url="http://d", timeout=30) as client:
            spec = _spec(tmp_path, 3, "{nvidia.com/gpu: 1}", barrier=2).read_text()
            never = client.post("/api/v1/sweeps", json={"spec": spec.replace("gpu: 1", "gpu: 3")})
            assert never.status_code == 400
            assert "needs 3 GPUs, this machine has 2" in never.json()["error"]
            texts = [spec, spec.replace('"r{{ i }}"', '"s{{ i }}"')]  # two configurations
            ids = {client.post("/api/v1/sweeps", json={"spec": t}).json()["sweep"] for t in texts}
            finished = set()
            with client.stream(
                "GET", "/api/v1/events", headers={"Last-Event-ID": "0"}, timeout=None
            ) as events:
                kind = ""
                for line in events.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "SweepFinished":
                        finished.add(json.loads(line[6:])["sweep_id"])
                        if finished >= ids:
                            break
            machine = client.get("/api/v1/resources").json()
            runs = [run for i in ids for run in client.get(f"/api/v1/sweeps/{i}").json()["runs"]]
    assert [g["index"] for g in machine["gpus"]] == [0, 1]
    assert machine["free"]["gpus"] == [{"index": 0, "free": 1.0}, {"index": 1, "free": 1.0}]
    assert [run["state"] for run in runs] == ["succeeded"] * 6
    given = {run["resources"]["gpus"][0]["uuid"] for run in runs}
    assert given == {CARDS[0][1], CARDS[1][1]}
    records = _records(tmp_path)
    assert len(records) == 6
    assert {str(r["cvd"]) for r in records} == given
    assert overcommits(records) == []


def test_the_check_finds_an_overcommitted_card() -> None:
    """The records check above can fail: two runs on one card at once are found."""
    a = {"cvd": CARDS[1][1], "share": None, "start": 1.0, "end": 3.0}
    b = {"cvd": f"{CARDS[0][1]},{CARDS[1][1]}", "share": None, "start": 2.0, "end": 4.0}
    halves = [{"cvd": CARDS[2][1], "share": "0.5", "start": 1.0, "end": 2.0}] * 2
    assert overcommits([a, b]) == ["card 1 at 2.000: 2.0 cards"]
    assert overcommits([a, *halves]) == []
    assert overcommits([*halves, {**halves[0], "share": "0.25"}]) == ["card 2 at 1.000: 1.25 cards"]


def test_a_run_stopped_on_its_timeout_gives_its_cards_back(tmp_path: Path) -> None:
    """Each run takes all four cards. The first never ends on its own: its timeout stops it
    (SIGTERM), and only then may the second start; cards kept by a stopped run would hang."""
    records = tmp_path / "records"
    records.mkdir()
    hang = tmp_path / "hang.py"
    hang.write_text("import time\nwhile True:\n    time.sleep(60)\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, concurrency: 2, values: [{{i: 0}}, {{i: 1}}]}}
        component:
          inputs: [{{name: i, type: int}}]
          termination: {{timeout: 1}}
          run:
            kind: job
            container:
              command: [/bin/sh, -c, 'echo "$CUDA_VISIBLE_DEVICES" > {records}/r{{{{ i }}}}.start;
                if [ {{{{ i }}}} = 0 ]; then exec {sys.executable} {hang}; fi']
              resources: {{limits: {{nvidia.com/gpu: 4}}}}
        """)
    )
    proc = _orchestrator(tmp_path, "run", str(spec), "--json", "--grace", "0")
    summary = json.loads(proc.stdout)
    states = {run["index"]: (run["state"], run["reason"]) for run in summary["runs"]}
    first_done = [i for i, (state, _) in states.items() if state == "succeeded"]
    timed_out = [i for i, (state, reason) in states.items() if state == "failed"]
    assert len(first_done) == 1 and len(timed_out) == 1, states
    assert states[timed_out[0]][1] == "timeout"
    seen = [p.read_text().strip() for p in sorted(records.glob("*.start"))]
    assert seen == [",".join(uuid for _, uuid, _, _ in CARDS)] * 2
