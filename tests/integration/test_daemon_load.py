"""A bounded load test on the real daemon: 200 submissions, 50 event followers, nothing lost."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration.test_daemon import Daemon, start_daemon

SUBMISSIONS = 200
FOLLOWERS = 50
LINES = 5


def follow(daemon: Daemon, wanted: int, seen: dict[str, int]) -> None:
    """Count SweepFinished events; when cut off (too slow), reconnect with Last-Event-ID."""
    last_id: str | None = None
    finished: set[str] = set()
    while len(finished) < wanted:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with (
                daemon.unix() as client,
                client.stream("GET", "/api/v1/events", headers=headers) as response,
            ):
                kind, event_id = "", None
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "SweepFinished":
                        finished.add(json.loads(line[6:])["sweep_id"])
                    elif line == "" and event_id is not None:
                        last_id = event_id
                    if len(finished) >= wanted:
                        break
        except httpx.TransportError:
            continue  # the connection broke mid-event: resume from the last whole one
    seen[threading.current_thread().name] = len(finished)


def test_two_hundred_submissions_and_fifty_followers_lose_nothing() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    proc = start_daemon(home)
    try:
        daemon = Daemon(home, proc)
        text = (
            "version: 1.1\nkind: component\nrun: {kind: job, container: {command: "
            f"[/bin/sh, -c, 'for i in {' '.join(map(str, range(LINES)))}; do echo line $i; "
            "done']}}\n"
        )
        seen: dict[str, int] = {}
        followers = [
            threading.Thread(
                target=follow, args=(daemon, SUBMISSIONS, seen), name=f"follower-{i}", daemon=True
            )
            for i in range(FOLLOWERS)
        ]
        for thread in followers:
            thread.start()

        def submit(_: int) -> str:
            with daemon.unix() as client:
                response = client.post("/api/v1/sweeps", json={"spec": text})
                assert response.status_code == 201, response.text
                return str(response.json()["sweep"])

        with ThreadPoolExecutor(8) as pool:
            sweeps = set(pool.map(submit, range(SUBMISSIONS)))
        for thread in followers:
            thread.join(120)
        assert len(sweeps) == SUBMISSIONS
        assert seen == {f"follower-{i}": SUBMISSIONS for i in range(FOLLOWERS)}
        with daemon.unix() as client:
            listed = {s["id"]: s["state"] for s in client.get("/api/v1/sweeps").json()}
        assert {listed[s] for s in sweeps} == {"succeeded"}
        with sqlite3.connect(home / "journal.sqlite") as conn:
            runs = conn.execute("SELECT id, state FROM runs").fetchall()
        assert len(runs) == SUBMISSIONS and {state for _, state in runs} == {"succeeded"}
        for run_id, _ in runs:
            log = (home / "runs" / run_id / "stdout.log").read_text().splitlines()
            assert log == [f"line {i}" for i in range(LINES)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)
