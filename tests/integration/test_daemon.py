"""The daemon for real: a server process on a Unix socket and a loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.store.layout import daemon_info_path
from tests.daemon_process import daemon_process, ready_daemon

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


class Daemon:
    def __init__(self, home: Path, proc: subprocess.Popen[str]) -> None:
        self.home = home
        self.proc = proc
        self.info = json.loads(daemon_info_path(home).read_text())

    def unix(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.info["socket"]),
            base_url="http://daemon",
            timeout=httpx.Timeout(10, read=None),
        )

    def tcp(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.info['port']}",
            headers=headers,
            timeout=httpx.Timeout(10, read=None),
        )


def start_daemon(home: Path, max_runs: int = 4) -> subprocess.Popen[str]:
    """A daemon on ``home`` (its Unix socket and a loopback port), once it says it is ready."""
    args = ["--home", str(home), "--port", "0", "--max-runs", str(max_runs), "--grace", "2"]
    return ready_daemon(args, cwd=ROOT)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with daemon_process(start_daemon, stop_timeout=20) as (home, proc):
        yield Daemon(home, proc)


def spec(command: list[str], values: list[dict[str, Any]] | None = None) -> str:
    matrix = f"matrix: {{kind: mapping, values: {json.dumps(values)}}}\n" if values else ""
    inputs = "  inputs: [{name: n, type: int}]\n" if values else ""
    return (
        f"version: 1.1\nkind: operation\n{matrix}component:\n{inputs}"
        f"  run: {{kind: job, container: {{command: {json.dumps(command)}}}}}\n"
    )


def sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event type, data) of each SSE event."""
    kind, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "data:":
            data.append("")


def test_health_token_and_socket_permissions(daemon: Daemon) -> None:
    assert oct(os.stat(daemon.info["socket"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(daemon.home).st_mode & 0o777) == "0o700"
    assert oct(os.stat(daemon_info_path(daemon.home)).st_mode & 0o777) == "0o600"
    with daemon.unix() as client:
        assert client.get("/api/v1/health").json() == {"status": "ok"}
    with daemon.tcp() as client:
        missing = client.get("/api/v1/health")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    with daemon.tcp("wrong") as client:
        assert client.get("/api/v1/sweeps").status_code == 401
    with daemon.tcp(daemon.info["token"]) as client:
        assert client.get("/api/v1/ready").json()["ready"] is True


def test_bad_requests_get_4xx_with_one_line(daemon: Daemon) -> None:
    with daemon.unix() as client:
        big = client.post("/api/v1/sweeps", content=b"x" * (1024 * 1024 + 1))
        assert big.status_code == 413
        heads = client.get("/api/v1/health", headers={"X-Big": "x" * 20_000})
        assert heads.status_code == 431
        bad_yaml = client.post("/api/v1/sweeps", json={"spec": "version: 1.1\nkind: [oops\n"})
        assert bad_yaml.status_code == 400
        assert bad_yaml.json()["error"].startswith("<submitted>: invalid YAML: line")
        bad_json = client.post("/api/v1/sweeps", content=b"{not json")
        assert bad_json.status_code == 400 and "expected JSON" in bad_json.json()["error"]
        wrong = client.post("/api/v1/sweeps", json={"spec": "version: 1.1\nkind: operation\n"})
        assert wrong.status_code == 400 and "one and only one" in wrong.json()["error"]
        assert client.get("/api/v1/sweeps/nope").status_code == 404
        assert client.get("/api/v1/nothing").status_code == 404


def test_two_clients_submit_at_once_and_both_finish(daemon: Daemon) -> None:
    text = spec([PY, "-c", "print({{ n }})"], [{"n": i} for i in range(4)])
    with daemon.unix() as watcher, watcher.stream("GET", "/api/v1/events") as events:
        answers: list[dict[str, Any]] = []

        def submit() -> None:
            with daemon.unix() as client:
                answers.append(client.post("/api/v1/sweeps", json={"spec": text}).json())

        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(answers) == 2 and all(a["runs"] == 4 for a in answers)
        finished: dict[str, str] = {}
        for kind, data in sse(events):
            if kind == "SweepFinished":
                event = json.loads(data)
                finished[event["sweep_id"]] = event["state"]
                if len(finished) == 2:
                    break
    assert finished == {a["sweep"]: "succeeded" for a in answers}


def test_logs_follow_over_sse_delivers_every_line_in_order(daemon: Daemon) -> None:
    code = (
        "import time\nfor i in range(60):\n    print(f'line {i}', flush=True)\n    time.sleep(0.01)"
    )
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        sweep = client.post("/api/v1/sweeps", json={"spec": spec([PY, "-c", code])}).json()
        run_id = next(
            json.loads(data)["run_id"]
            for kind, data in sse(events)
            if kind == "RunCreated" and json.loads(data)["sweep_id"] == sweep["sweep"]
        )
    with (
        daemon.unix() as client,
        client.stream("GET", f"/api/v1/runs/{run_id}/logs", params={"follow": "1"}) as response,
    ):
        lines: list[str] = []
        for kind, data in sse(response):
            if kind == "end":
                break
            lines.extend(data.split("\n"))
    assert lines == [f"line {i}" for i in range(60)]
    with daemon.unix() as client:
        assert client.get(f"/api/v1/runs/{run_id}/logs").text.splitlines()[-1] == "line 59"


def test_stop_a_sweep_through_the_api_and_the_cli(daemon: Daemon) -> None:
    text = spec([PY, "-c", "import time; print('up', flush=True); time.sleep(600)"])
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
        stream = sse(events)
        for kind, data in stream:
            if kind == "RunStateChanged" and json.loads(data)["state"] == "running":
                break
        stopped = subprocess.run(
            [PY, "-m", "orchestrator", "stop", sweep, "--home", str(daemon.home)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        assert stopped.returncode == 0, stopped.stderr
        for kind, data in stream:
            if kind == "SweepFinished":
                finished = json.loads(data)
                break
        else:
            raise AssertionError("stream ended without SweepFinished")
        assert (finished["sweep_id"], finished["state"]) == (sweep, "stopped")
        assert client.post("/api/v1/sweeps/nope/stop").status_code == 404


def test_cli_submit(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(spec([PY, "-c", "print(1)"]))
    done = subprocess.run(
        [PY, "-m", "orchestrator", "submit", str(path), "--json", "--home", str(daemon.home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == 1
    path.write_text("version: 1.1\nkind: operation\n")
    bad = subprocess.run(
        [PY, "-m", "orchestrator", "submit", str(path), "--home", str(daemon.home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert bad.returncode == 2 and bad.stderr.startswith(f"{path}: one and only one")
    none = subprocess.run(
        [PY, "-m", "orchestrator", "submit", str(path), "--home", str(tmp_path / "nodaemon")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert none.returncode == 2 and "no daemon is running" in none.stderr


def test_a_second_daemon_on_the_same_home_is_refused(daemon: Daemon) -> None:
    second = subprocess.run(
        [PY, "-m", "orchestrator", "daemon", "--home", str(daemon.home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert second.returncode == 2
    assert "a daemon is already running" in second.stderr
    with daemon.unix() as client:
        assert client.get("/api/v1/health").status_code == 200, "the first keeps its socket"


def test_open_mapping_ask_and_tell(daemon: Daemon) -> None:
    score = "import json, sys; print(json.dumps({'metrics': {'score': int(sys.argv[1]) * 10}}))"
    text = (
        "version: 1.1\nkind: operation\nmatrix: {kind: mapping, values: []}\ncomponent:\n"
        "  inputs: [{name: n, type: int}]\n  outputs: [{name: score, type: float}]\n"
        f"  run: {{kind: job, container: {{command: {json.dumps([PY, '-c', score])}, "
        "args: ['{{ n }}']}}\n"
    )
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        sweep = client.post("/api/v1/sweeps", json={"spec": text, "open": True}).json()["sweep"]
        bad = client.post(f"/api/v1/sweeps/{sweep}/configurations", json={"values": [{"n": 1.5}]})
        assert bad.status_code == 400 and bad.json()["error"] == (
            "values[0].n: expected int, got 1.5"
        )
        asked = client.post(
            f"/api/v1/sweeps/{sweep}/configurations", json={"values": [{"n": 1}, {"n": 2}]}
        )
        assert asked.status_code == 202 and asked.json() == {"indexes": [0, 1]}
        told: dict[int, Any] = {}
        stream = sse(events)
        for kind, data in stream:
            event = json.loads(data)
            if kind == "RunStateChanged" and event["state"] == "succeeded":
                told[event["index"]] = event["outputs"]
                if len(told) == 2:
                    break
        assert told == {0: {"score": 10.0}, 1: {"score": 20.0}}
        more = client.post(f"/api/v1/sweeps/{sweep}/configurations", json={"values": [{"n": 3}]})
        assert more.json() == {"indexes": [2]}
        assert client.post(f"/api/v1/sweeps/{sweep}/close").status_code == 202
        for kind, data in stream:
            if kind == "SweepFinished":
                finished = json.loads(data)
                break
        else:
            raise AssertionError("stream ended without SweepFinished")
        assert (finished["sweep_id"], finished["counts"]) == (sweep, {"succeeded": 3})
        closed = client.post(f"/api/v1/sweeps/{sweep}/configurations", json={"values": [{"n": 4}]})
        assert closed.status_code == 404


def test_kill_9_and_restart_finishes_the_sweep(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    marker = tmp_path / "marker.txt"
    code = (
        "import os, time; time.sleep(0.3); "
        f"open({str(marker)!r}, 'a').write('{{{{ n }}}} ' + os.environ['ORCHESTRATOR_RUN_ID'] "
        "+ chr(10))"
    )
    text = spec([PY, "-c", code], [{"n": i} for i in range(6)]).replace(
        "kind: mapping,", "kind: mapping, concurrency: 2,"
    )
    first = start_daemon(home)
    second: subprocess.Popen[str] | None = None
    try:
        daemon = Daemon(home, first)
        with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
            sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
            done = 0
            for kind, data in sse(events):
                if kind == "RunStateChanged" and json.loads(data)["state"] == "succeeded":
                    done += 1
                    if done == 2:
                        break
            first.kill()
        first.wait(10)
        second = start_daemon(home)
        with (
            Daemon(home, second).unix() as client,
            client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as events,
        ):
            ends = []  # recovery announces the loss, then the resumed sweep ends
            for kind, data in sse(events):
                if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                    ends.append((json.loads(data)["state"], json.loads(data)["reason"]))
                    if len(ends) == 2:
                        break
            assert ends == [("failed", "orchestrator_lost"), ("succeeded", None)]
            shown = client.get(f"/api/v1/sweeps/{sweep}").json()
        assert sorted(r["params"]["n"] for r in shown["runs"]) == list(range(6))
        assert {r["state"] for r in shown["runs"]} == {"succeeded"}
        succeeded = {r["id"] for r in shown["runs"]}
        lines = [line.split() for line in marker.read_text().splitlines()]
        counted = sorted(int(n) for n, run_id in lines if run_id in succeeded)
        assert counted == list(range(6)), "every configuration succeeded exactly once"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0
            if proc is not None and proc.stderr is not None:
                proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def test_cli_goes_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("x")
    code = (
        f"import os, sys, time; print('a', flush=True); time.sleep(0.3); print('b'); "
        f"sys.exit(1 if {{{{ n }}}} == 1 and os.path.exists({str(flag)!r}) else 0)"
    )
    text = spec([PY, "-c", code], [{"n": 0}, {"n": 1}])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "orchestrator", *args, "--home", str(daemon.home)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
        stream = sse(events)
        run_id = next(
            json.loads(d)["run_id"]
            for k, d in stream
            if k == "RunStateChanged" and json.loads(d)["state"] == "running"
        )
        followed = cli("logs", run_id, "-f")  # pushed over SSE until the run ends
        assert followed.stdout.splitlines() == ["a", "b"]
        for kind, data in stream:
            if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                break
        else:
            raise AssertionError("stream ended without SweepFinished")
        listed = json.loads(cli("ls", "--json").stdout)
        assert listed[0]["id"] == sweep and listed[0]["counts"] == {"failed": 1, "succeeded": 1}
        shown = json.loads(cli("show", "last", "--json", "--sort=-n").stdout)
        assert [(r["index"], r["state"]) for r in shown["runs"]] == [
            (0, "succeeded"),
            (1, "failed"),
        ]
        table = cli("show", sweep[:8]).stdout.splitlines()  # by a prefix, through the daemon
        second = next(line for line in table if line.startswith("1 "))
        assert "failed" in second and "exit code 1" in second, table
        assert cli("show", "nope").returncode == 2
        flag.unlink()
        handed = cli("rerun", sweep[:10], "--failed")
        assert handed.returncode == 0 and "the daemon resumes sweep" in handed.stdout
        for kind, data in stream:
            if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                rerun_finished = json.loads(data)
                break
        else:
            raise AssertionError("stream ended without SweepFinished")
        assert rerun_finished["counts"] == {"succeeded": 2}


def _finished_run(client: httpx.Client, sweep_id: str) -> dict[str, Any]:
    """Wait (on the replayed event stream, no polling) for the sweep to end; its only run."""
    with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as response:
        for kind, data in sse(response):
            if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep_id:
                break
    runs: list[dict[str, Any]] = client.get(f"/api/v1/sweeps/{sweep_id}").json()["runs"]
    assert len(runs) == 1
    return runs[0]


def test_an_edit_to_tracked_code_misses_the_cache_in_the_next_daemon_sweep(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The cache's git memo lives for one sweep: a daemon must not reuse it for the next."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("import lib\n")
    (repo / "lib.py").write_text("VALUE = 1\n")  # tracked, but not named in argv
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "code"]):
        subprocess.run([*git, *args], cwd=repo, check=True)
    text = spec([PY, "train.py"], [{"n": 1}])
    body = {"spec": text, "base_dir": str(repo), "spec_path": str(repo / "spec.yaml")}

    def submit() -> dict[str, Any]:
        with daemon.unix() as client:
            answer = client.post("/api/v1/sweeps", json=body)
            assert answer.status_code == 201, answer.text
            return _finished_run(client, answer.json()["sweep"])

    first, second = submit(), submit()
    assert (first["state"], first["reason"]) == ("succeeded", None)
    assert (second["state"], second["reason"]) == ("succeeded", "cache_hit")
    (repo / "lib.py").write_text("VALUE = 2\n")
    third = submit()
    assert (third["state"], third["reason"]) == ("succeeded", None), "the edit must miss"


def test_resume_rejects_a_malformed_only_list(daemon: Daemon) -> None:
    with daemon.unix() as client:
        for only in (3, "failed", [1], {"failed": True}):
            answer = client.post("/api/v1/sweeps/last/resume", json={"only": only})
            assert answer.status_code == 400, (only, answer.text)
            assert answer.json()["error"].startswith("body: expected"), answer.text
        assert client.post("/api/v1/sweeps/nope/resume", json={}).status_code == 404
