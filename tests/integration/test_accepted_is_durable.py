"""What the daemon answers as accepted is durable: kill -9 it the moment a 201 (a new sweep) or
a 202 (a resume) arrives, and the sweep is in the journal; a restarted daemon runs it to the
end, each configuration succeeding exactly once.

``ORCHESTRATOR_FAULT_TRIALS`` sets the number of kill -9 trials (default 10),
``ORCHESTRATOR_FAULT_SEED`` the seed that draws each trial's sweep.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_daemon import PY, Daemon, sse, start_daemon
from tests.procwait import gone_within

pytestmark = pytest.mark.faults

TRIALS = int(os.environ.get("ORCHESTRATOR_FAULT_TRIALS", "10"))
SEED = int(os.environ.get("ORCHESTRATOR_FAULT_SEED", "20261130"))
#: Each trial starts a daemon (about a second); more trials get more time.
SCALED = pytest.mark.timeout(60 + 3 * TRIALS)


class Daemons:
    """Daemon processes on one home folder, started one after another; each one's stderr is
    drained (and kept) so that it never blocks on a full pipe."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[list[str]] = []
        self._drains: list[threading.Thread] = []

    def start(self) -> Daemon:
        proc = start_daemon(self.home)
        self.procs.append(proc)
        lines: list[str] = []
        self.logs.append(lines)
        assert proc.stderr is not None
        drain = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
        drain.start()
        self._drains.append(drain)
        return Daemon(self.home, proc)

    def kill_9(self, proc: subprocess.Popen[str]) -> None:
        proc.kill()
        assert gone_within(proc.pid, 10), "SIGKILL is delivered"
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, "a SIGTERM ends the daemon cleanly"
        for drain in self._drains:
            drain.join(5)
        for proc in self.procs:
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    group = Daemons(home)
    try:
        yield group
    finally:
        group.close()
        shutil.rmtree(home, ignore_errors=True)


def _spec(marker: Path, label: str, n: int, hold: float, fail_flag: Path | None = None) -> str:
    """``n`` configurations; each sleeps ``hold`` s, then appends ``LABEL INDEX RUN_ID`` to
    ``marker`` (and exits 1 instead while ``fail_flag`` exists)."""
    fail = f"if os.path.exists({str(fail_flag)!r}): sys.exit(1)\n" if fail_flag else ""
    code = (
        f"import os, sys, time\ntime.sleep({hold})\n{fail}"
        f"open({str(marker)!r}, 'a').write('{label} {{{{ n }}}} ' + "
        "os.environ['ORCHESTRATOR_RUN_ID'] + chr(10))\n"
    )
    values = json.dumps([{"n": i} for i in range(n)])
    return (
        f"version: 1.1\nkind: operation\nmatrix: {{kind: mapping, concurrency: 2, values: "
        f"{values}}}\ncomponent:\n  inputs: [{{name: n, type: int}}]\n"
        f"  run: {{kind: job, container: {{command: {json.dumps([PY, '-c', code])}}}}}\n"
    )


def _kill_on_answer(
    daemons: Daemons, daemon: Daemon, path: str, body: dict[str, Any], expect: int
) -> None:
    """POST, and kill -9 the daemon the moment the status line of the answer arrives (the
    body is not waited for: the sweep is found by its name)."""
    with daemon.unix() as client, client.stream("POST", path, json=body) as response:
        status = response.status_code
        daemons.kill_9(daemon.proc)
    assert status == expect, f"{path} answered {status}"


def _journaled(home: Path) -> dict[str, tuple[str, str, str | None]]:
    """Every sweep in the journal, read the way another process would: name -> (id, state,
    spec text)."""
    uri = f"file:{home / 'journal.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute("SELECT name, id, state, spec_text FROM sweeps").fetchall()
    return {name: (sweep_id, state, text) for name, sweep_id, state, text in rows}


def _wait_finished(daemon: Daemon, sweep_ids: set[str]) -> dict[str, str]:
    """The final state of each sweep, from the event stream replayed from the start (the
    recovery's ``orchestrator_lost`` endings are skipped: resumed sweeps end again)."""
    finished: dict[str, str] = {}
    if not sweep_ids:
        return finished
    with (
        daemon.unix() as client,
        client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as events,
    ):
        for kind, data in sse(events):
            event = json.loads(data)
            if kind != "SweepFinished" or event["reason"] == "orchestrator_lost":
                continue
            if event["sweep_id"] in sweep_ids:
                finished[event["sweep_id"]] = event["state"]
                if len(finished) == len(sweep_ids):
                    break
    return finished


def _succeeded_once(daemon: Daemon, marker: Path, sweeps: dict[str, tuple[str, int]]) -> None:
    """Each configuration of each sweep has exactly one succeeded run, whose process wrote
    its line exactly once."""
    lines = Counter(tuple(line.split()) for line in marker.read_text().splitlines())
    with daemon.unix() as client:
        for label, (sweep_id, n) in sweeps.items():
            shown = client.get(f"/api/v1/sweeps/{sweep_id}").json()
            runs = shown["runs"]
            assert sorted(r["params"]["n"] for r in runs) == list(range(n)), label
            assert {r["state"] for r in runs} == {"succeeded"}, (label, runs)
            for run in runs:
                key = (label, str(run["params"]["n"]), run["id"])
                assert lines[key] == 1, f"{key}: written {lines[key]} times"


@SCALED
def test_every_sweep_answered_201_survives_a_kill_9_the_moment_the_answer_arrives(
    daemons: Daemons, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    marker = tmp_path / "marker.txt"
    marker.touch()
    answered: dict[str, int] = {}  # sweep name -> configurations
    for trial in range(TRIALS):
        daemon = daemons.start()  # resumes what the previous trial's kill left behind
        label = f"trial-{trial}"
        n, hold = rng.randint(1, 4), rng.choice([0.0, 0.05, 0.2])
        body = {"spec": _spec(marker, label, n, hold), "name": label}
        _kill_on_answer(daemons, daemon, "/api/v1/sweeps", body, 201)
        answered[label] = n

    journaled = _journaled(daemons.home)
    lost = sorted(set(answered) - set(journaled))
    assert not lost, f"{len(lost)} of {len(answered)} sweeps answered 201 were lost: {lost}"
    assert all(journaled[name][2] for name in answered), "each with its spec text"

    unfinished = {journaled[name][0] for name in answered if journaled[name][1] != "succeeded"}
    final = daemons.start()
    assert set(_wait_finished(final, unfinished).values()) <= {"succeeded"}
    _succeeded_once(
        final, marker, {name: (journaled[name][0], answered[name]) for name in answered}
    )


@SCALED
def test_a_resume_answered_202_survives_a_kill_9_the_moment_the_answer_arrives(
    daemons: Daemons, tmp_path: Path
) -> None:
    marker, flag = tmp_path / "marker.txt", tmp_path / "fail"
    marker.touch()
    trials = max(1, TRIALS // 5)
    daemon = daemons.start()
    sweeps: dict[str, tuple[str, int]] = {}
    with daemon.unix() as client:
        flag.touch()  # every run fails the first time
        for trial in range(trials):
            label = f"resume-{trial}"
            body = {"spec": _spec(marker, label, 2, 0.0, flag), "name": label}
            answer = client.post("/api/v1/sweeps", json=body)
            assert answer.status_code == 201, answer.text
            sweeps[label] = (answer.json()["sweep"], 2)
    assert set(_wait_finished(daemon, {s for s, _ in sweeps.values()}).values()) == {"failed"}
    flag.unlink()
    for trial, (label, (sweep_id, _)) in enumerate(sweeps.items()):
        if trial:
            daemon = daemons.start()  # resumes what the previous kill interrupted
        _kill_on_answer(daemons, daemon, f"/api/v1/sweeps/{sweep_id}/resume", {}, 202)
        assert _journaled(daemons.home)[label][1] == "running", "the resume is journaled"
    journaled = _journaled(daemons.home)
    unfinished = {journaled[label][0] for label in sweeps if journaled[label][1] != "succeeded"}
    final = daemons.start()
    assert set(_wait_finished(final, unfinished).values()) <= {"succeeded"}
    _succeeded_once(final, marker, sweeps)


def test_health_says_ok_while_the_journal_writes(daemons: Daemons) -> None:
    with daemons.start().unix() as client:
        assert client.get("/api/v1/health").json() == {"status": "ok"}
        ready = client.get("/api/v1/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True


@SCALED
def test_configurations_and_a_close_answered_202_survive_a_kill_9(
    daemons: Daemons, tmp_path: Path
) -> None:
    """An open mapping (ask/tell): configurations added, then the close, each answered 202
    the moment before the daemon dies, all run once after a restart; until the close is
    accepted, the restarted daemon keeps the sweep open."""
    rng = random.Random(SEED)
    marker = tmp_path / "marker.txt"
    marker.touch()
    body = {"spec": _spec(marker, "open", 0, 0.0), "name": "open", "open": True}
    _kill_on_answer(daemons, daemons.start(), "/api/v1/sweeps", body, 201)
    sweep_id = _journaled(daemons.home)["open"][0]
    added = 0
    for _ in range(max(2, TRIALS // 3)):
        daemon = daemons.start()  # resumes the open sweep: still open
        values = [{"n": added + i} for i in range(rng.randint(1, 3))]
        path = f"/api/v1/sweeps/{sweep_id}/configurations"
        _kill_on_answer(daemons, daemon, path, {"values": values}, 202)
        added += len(values)
    daemon = daemons.start()
    _kill_on_answer(daemons, daemon, f"/api/v1/sweeps/{sweep_id}/close", {}, 202)
    final = daemons.start()  # the sweep is closed: it ends once every configuration ran
    assert _wait_finished(final, {sweep_id}) == {sweep_id: "succeeded"}
    _succeeded_once(final, marker, {"open": (sweep_id, added)})


def test_a_lost_sweep_that_cannot_be_resumed_does_not_keep_the_daemon_down(
    daemons: Daemons, tmp_path: Path
) -> None:
    component = tmp_path / "component.yaml"
    command = json.dumps([PY, "-c", "import time; time.sleep(60)"])
    component.write_text(
        f"version: 1.1\nkind: component\nrun: {{kind: job, container: {{command: {command}}}}}\n"
    )
    body = {
        "spec": "version: 1.1\nkind: operation\npathRef: component.yaml\n",
        "base_dir": str(tmp_path),
    }
    _kill_on_answer(daemons, daemons.start(), "/api/v1/sweeps", dict(body, name="gone"), 201)
    component.unlink()  # the restarted daemon cannot load the sweep's spec again
    with daemons.start().unix() as client:
        assert client.get("/api/v1/health").json() == {"status": "ok"}
        shown = client.get("/api/v1/sweeps/last").json()
        assert (shown["name"], shown["state"], shown["reason"]) == (
            "gone",
            "failed",
            "orchestrator_lost",
        )
