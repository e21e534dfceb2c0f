"""A journal that cannot write (a full disk) and then can again: a sweep whose write was lost
ends ``failed`` with the reason; submissions get 503 and ``/health`` says ``degraded`` while it
lasts; service resumes by itself once the disk has room; the CLI says so in one line.

Once in-process with the write connection failing on demand, once (as root) with the daemon as
a subprocess and its home on a real 2 MiB tmpfs that is filled, then freed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator.daemon.app import build_app
from orchestrator.daemon.hub import Hub
from orchestrator.daemon.manager import SweepManager
from orchestrator.engine.events import Event, RunStateChanged, SweepFinished
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.store.journal import Journal
from tests.conftest import CliResult
from tests.integration.test_daemon import PY, ROOT, Daemon, sse, start_daemon
from tests.journal_faults import FULL, DiskFull

pytestmark = pytest.mark.faults

#: Seconds any wait below may take before the test fails (each waits on an event or a line).
WAIT = 30


def _spec(code: str, *args: str) -> str:
    command = json.dumps([PY, "-c", code, *args])
    return (
        "version: 1.1\nkind: operation\ncomponent:\n"
        f"  run: {{kind: job, container: {{command: {command}}}}}\n"
    )


#: A run that waits for a line on the FIFO named by its argument, then exits 0.
WAITS = "import sys; open(sys.argv[1]).read()"
#: The same, reporting a metric (one journal write) before it exits.
REPORTS = WAITS + '; print(\'{"metrics": {"x": 1}}\', flush=True)'
QUICK = _spec("print('done')")


def _release(fifo: Path) -> None:
    """Let the run waiting on ``fifo`` go on (blocks until it has opened it)."""
    with open(fifo, "w") as f:
        f.write("go\n")


class Events:
    """The daemon's event feed, in-process: wait for the first event that matches."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._waiting: list[tuple[Callable[[Event], bool], anyio.Event]] = []

    def publish(self, event: Event) -> None:
        self.seen.append(event)
        for matches, woken in self._waiting:
            if matches(event):
                woken.set()

    async def first(self, matches: Callable[[Event], bool]) -> Event:
        woken = anyio.Event()
        self._waiting.append((matches, woken))
        if not any(matches(e) for e in self.seen):
            with anyio.fail_after(WAIT):
                await woken.wait()
        return next(e for e in self.seen if matches(e))

    async def running(self, sweep_id: str) -> None:
        await self.first(
            lambda e: (
                isinstance(e, RunStateChanged) and e.sweep_id == sweep_id and e.state == "running"
            )
        )

    async def finished(self, sweep_id: str) -> SweepFinished:
        event = await self.first(lambda e: isinstance(e, SweepFinished) and e.sweep_id == sweep_id)
        assert isinstance(event, SweepFinished)
        return event


def test_a_full_disk_fails_what_it_lost_answers_503_then_service_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Journal, "RETRY_S", 0.02)
    disk = DiskFull().install(monkeypatch)
    fifo_a, fifo_b = tmp_path / "a.fifo", tmp_path / "b.fifo"
    os.mkfifo(fifo_a)
    os.mkfifo(fifo_b)
    home = tmp_path / "home"
    journal = Journal(home / "journal.sqlite")
    health: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    journal.on_health(health.put)
    events, reports = Events(), list[str]()
    manager = SweepManager(
        home,
        journal,
        max_runs=4,
        grace=1,
        publish=events.publish,
        plugins=PluginHost.installed(io.StringIO()),
        report=reports.append,
    )
    app = build_app(manager, Hub(), home, None)

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:

                async def submit(name: str, text: str) -> httpx.Response:
                    return await client.post("/api/v1/sweeps", json={"spec": text, "name": name})

                a = (await submit("a", _spec(REPORTS, str(fifo_a)))).json()["sweep"]
                b = (await submit("b", _spec(WAITS, str(fifo_b)))).json()["sweep"]
                await events.running(a)
                await events.running(b)
                await journal.flush()  # what a and b wrote so far is committed

                disk.start()
                refused = await submit("refused", QUICK)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"].endswith(
                    f"not accepted: journal write failed: {FULL}"
                )
                degraded = await client.get("/api/v1/health")
                assert degraded.json() == {"status": "degraded", "journal": FULL}
                not_ready = await client.get("/api/v1/ready")
                assert not_ready.status_code == 503
                assert not_ready.json() == {"ready": False, "journal": FULL}
                listed = await client.get("/api/v1/sweeps")  # reads go on (`ls`)
                assert listed.status_code == 200
                assert {s["name"] for s in listed.json()} == {"a", "b"}

                await anyio.to_thread.run_sync(_release, fifo_a)  # a's metric is lost
                ended = await events.finished(a)
                assert (ended.state, ended.reason) == ("failed", f"journal write failed: {FULL}")

                disk.stop()
                assert await anyio.to_thread.run_sync(health.get, True, WAIT) == FULL
                assert await anyio.to_thread.run_sync(health.get, True, WAIT) is None
                assert (await client.get("/api/v1/health")).json() == {"status": "ok"}
                assert (await client.get("/api/v1/ready")).status_code == 200
                await anyio.to_thread.run_sync(_release, fifo_b)
                assert (await events.finished(b)).state == "succeeded", "b lost nothing"
                again = await submit("again", QUICK)
                assert again.status_code == 201, again.text
                assert (await events.finished(again.json()["sweep"])).state == "succeeded"

                shown = (await client.get(f"/api/v1/sweeps/{a}")).json()
                assert (shown["state"], shown["reason"]) == (
                    "failed",
                    f"journal write failed: {FULL}",
                ), "a's final state was written once the disk had room"
                listed = await client.get("/api/v1/sweeps")
                assert sorted(s["name"] for s in listed.json()) == ["a", "again", "b"]
            await manager.shutdown(1)

    try:
        anyio.run(scenario)
    finally:
        journal.close()
    assert reports == [
        f"the journal cannot write ({FULL}): new sweeps get 503 until it can",
        "the journal writes again",
    ]


def test_a_provenance_record_the_full_disk_refuses_never_fails_its_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provenance is collected while the first runs start, so its write may meet a full
    disk a run's writes did not: the sweep goes on (nothing it needs was lost), and the
    record is written once the disk has room."""
    disk = DiskFull().install(monkeypatch)
    journal = Journal(tmp_path / "journal.sqlite")
    disk.start()
    journal.add_provenance("s1", {"host": "h", "environment": {"A": "1"}}, at=1.0)
    journal.flush_sync(WAIT, check=False)
    assert disk.failed.is_set()
    assert journal.lost("s1") is None
    assert journal.provenance_at("s1", None) is None
    disk.stop()
    journal.flush_sync(WAIT)
    made = journal.provenance_at("s1", 1.0)
    assert made is not None and made["host"] == "h" and made["environment"] == {"A": "1"}
    journal.close()


def test_cli_run_whose_start_cannot_be_journaled_is_one_line_and_runs_nothing(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    DiskFull().install(monkeypatch).start()
    marker = tmp_path / "ran"
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec(f"open({str(marker)!r}, 'w')"))
    result = cli(str(spec), "--home", str(tmp_path / "home"))
    assert result.code == 1
    last = result.err.splitlines()[-1]
    assert last.startswith("orchestrator: sweep ") and last.endswith(
        f"not started: journal write failed: {FULL}"
    ), result.err
    assert "Traceback" not in result.err and result.out == ""
    assert not marker.exists(), "nothing runs that the journal does not hold"


# --------------------------------------------------------------------------- a real full disk
@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs under /tmp (short enough for the daemon's socket path)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB tmpfs needs root (the in-process test covers the rest)")
    mountpoint = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        shutil.rmtree(mountpoint, ignore_errors=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def test_a_real_full_disk_under_the_daemon(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    proc = start_daemon(home)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()

    def logged(words: str) -> dict[str, Any]:
        """The daemon's next diagnostic whose event contains ``words``."""
        while True:
            line = lines.get(timeout=WAIT)
            if line.startswith("{") and words in json.loads(line)["event"]:
                return dict(json.loads(line))

    def submitted(client: httpx.Client, name: str) -> httpx.Response:
        return client.post("/api/v1/sweeps", json={"spec": QUICK, "name": name})

    def wait_finished(client: httpx.Client, sweep_id: str) -> str:
        with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "0"}) as stream:
            for kind, data in sse(stream):
                event = json.loads(data)
                if kind == "SweepFinished" and event["sweep_id"] == sweep_id:
                    return str(event["state"])
        raise AssertionError("the event stream ended")

    try:
        with Daemon(home, proc).unix() as client:
            first = submitted(client, "before")
            assert first.status_code == 201, first.text
            assert wait_finished(client, first.json()["sweep"]) == "succeeded"

            filler = small_disk / "filler"
            _fill(filler)
            refused = submitted(client, "while-full")
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert "not accepted: journal write failed:" in error, error
            cannot = logged("the journal cannot write")
            assert cannot["level"] == "error"
            degraded = client.get("/api/v1/health").json()
            assert degraded["status"] == "degraded" and degraded["journal"], degraded
            assert client.get("/api/v1/ready").status_code == 503
            listed = subprocess.run(
                [PY, "-m", "orchestrator", "ls", "--json", "--home", str(home)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=WAIT,
                check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert [s["name"] for s in json.loads(listed.stdout)] == ["before"]

            filler.unlink()
            logged("the journal writes again")  # the writer found room by itself
            assert client.get("/api/v1/health").json() == {"status": "ok"}
            assert client.get("/api/v1/ready").status_code == 200
            after = submitted(client, "after")
            assert after.status_code == 201, after.text
            assert wait_finished(client, after.json()["sweep"]) == "succeeded"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        drainer.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
