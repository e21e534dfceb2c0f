"""A bounded load test on the real daemon: 200 submissions, 50 event followers, nothing lost.

The followers and submitters are tasks on one event loop, not threads: fifty threads parsing
event streams under one GIL made the test as slow as the machine was busy, and a follower
thread left behind by a failed test kept reconnecting to a daemon that was gone."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import tempfile
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from tests.integration.test_daemon import Daemon, start_daemon

SUBMISSIONS = 200
FOLLOWERS = 50
LINES = 5
DEADLINE_S = 150


def unix_client(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=daemon.info["socket"]),
        base_url="http://daemon",
        timeout=httpx.Timeout(10, read=None),
    )


async def follow(daemon: Daemon, wanted: int) -> int:
    """Count SweepFinished events; when cut off (too slow), reconnect with Last-Event-ID.

    A stream cut between events ends cleanly; one cut mid-event is a RemoteProtocolError.
    Any other transport error (the daemon is gone) fails the test."""
    last_id: str | None = None
    finished: set[str] = set()
    async with unix_client(daemon) as client:
        while len(finished) < wanted:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with client.stream("GET", "/api/v1/events", headers=headers) as response:
                    assert response.status_code == 200
                    kind, event_id = "", None
                    async for line in response.aiter_lines():
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
            except httpx.RemoteProtocolError:
                continue  # the connection broke mid-event: resume from the last whole one
    return len(finished)


async def load(daemon: Daemon, text: str) -> tuple[set[str], list[int]]:
    sweeps: set[str] = set()
    seen: list[int] = []
    submitters = anyio.CapacityLimiter(8)

    async def follower() -> None:
        seen.append(await follow(daemon, SUBMISSIONS))

    async def submit(client: httpx.AsyncClient) -> None:
        async with submitters:
            response = await client.post("/api/v1/sweeps", json={"spec": text})
        assert response.status_code == 201, response.text
        sweeps.add(str(response.json()["sweep"]))

    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as followers:
            for _ in range(FOLLOWERS):
                followers.start_soon(follower)
            async with unix_client(daemon) as client, anyio.create_task_group() as submissions:
                for _ in range(SUBMISSIONS):
                    submissions.start_soon(submit, client)
    return sweeps, seen


@pytest.mark.timeout(DEADLINE_S + 60)
def test_two_hundred_submissions_and_fifty_followers_lose_nothing() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    proc = start_daemon(home)
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)  # never let its pipe fill
    drain.start()
    try:
        daemon = Daemon(home, proc)
        text = (
            "version: 1.1\nkind: component\nrun: {kind: job, container: {command: "
            f"[/bin/sh, -c, 'for i in {' '.join(map(str, range(LINES)))}; do echo line $i; "
            "done']}}\n"
        )
        sweeps, seen = anyio.run(load, daemon, text)
        assert len(sweeps) == SUBMISSIONS
        assert seen == [SUBMISSIONS] * FOLLOWERS
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
        drain.join(10)
        proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)
