"""A burst of submissions to the daemon: each sweep's provenance is recorded, and git looks at
the code a few times for the whole burst, not 2 to 5 processes per sweep (which took both
cores of a small machine: submissions fell from hundreds a second to about ten)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.store.journal import Journal
from orchestrator.store.layout import daemon_info_path, journal_path
from tests.daemon_process import daemon_process, ready_daemon
from tests.git_repo import committed_repo

PY = sys.executable
SWEEPS = 12
#: The first git process waits until the test writes a line here (a FIFO): every sweep of
#: the burst is accepted while a look at the code runs.
FAKE_GIT = """#!/bin/sh
echo "$3" >> '{log}'
if mkdir '{first}' 2>/dev/null; then read line < '{gate}'; fi
exec '{git}' "$@"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one committed file, changed since."""
    repo = committed_repo(tmp_path / "project", {"train.py": "print('first')\n"})
    (repo / "train.py").write_text("print('changed')\n")
    return repo


class FakeGit:
    """``git`` first on the daemon's PATH: logs each command, then runs the real git; the
    first one waits for :meth:`open`."""

    def __init__(self, folder: Path) -> None:
        real = shutil.which("git")
        assert real is not None, "the tests need git"
        folder.mkdir()
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "git.log"
        self.gate = folder / "gate"
        os.mkfifo(self.gate)
        script = self.bin / "git"
        script.write_text(
            FAKE_GIT.format(log=self.log, first=folder / "first", gate=self.gate, git=real)
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def open(self) -> None:
        """Let the first git process go on (it may not have started yet: this waits)."""
        with self.gate.open("w") as gate:
            gate.write("go\n")

    def commands(self) -> list[str]:
        return self.log.read_text().split()


@pytest.fixture
def git(tmp_path: Path) -> FakeGit:
    return FakeGit(tmp_path / "fake-git")


@pytest.fixture
def daemon(git: FakeGit) -> Iterator[Path]:
    """A daemon whose git is :class:`FakeGit`; its home."""
    env = {**os.environ, "PATH": f"{git.bin}{os.pathsep}{os.environ['PATH']}"}

    def start(home: Path) -> subprocess.Popen[str]:
        return ready_daemon(["--home", str(home), "--max-runs", "4"], env=env)

    with daemon_process(start, stop_timeout=30) as (home, _):
        yield home


def _client(home: Path) -> httpx.Client:
    info = json.loads(daemon_info_path(home).read_text())
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=info["socket"]),
        base_url="http://daemon",
        timeout=httpx.Timeout(30, read=None),
    )


def _finished(events: httpx.Response, count: int) -> set[str]:
    """The ids of the next ``count`` sweeps that finish, read from the event stream."""
    done: set[str] = set()
    kind = ""
    for line in events.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "SweepFinished":
            done.add(json.loads(line[6:])["sweep_id"])
            if len(done) == count:
                break
    return done


def test_a_burst_of_submissions_looks_at_the_code_a_few_times(
    daemon: Path, git: FakeGit, repo: Path
) -> None:
    body = {
        "spec": "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [true]}}\n",
        "base_dir": str(repo),
    }
    ids: list[str] = []
    with _client(daemon) as watcher, watcher.stream("GET", "/api/v1/events") as events:

        def submit(count: int) -> None:
            with _client(daemon) as client:
                for _ in range(count):
                    answer = client.post("/api/v1/sweeps", json=body)
                    assert answer.status_code == 201, answer.text
                    ids.append(answer.json()["sweep"])

        submit(1)  # its look at the code waits for the gate...
        threads = [threading.Thread(target=submit, args=(SWEEPS // 4,)) for _ in range(4)]
        for thread in threads:  # ...while the burst is accepted
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(ids) == SWEEPS + 1
        git.open()
        assert _finished(events, len(ids)) == set(ids)
    looks = git.commands().count("rev-parse")
    assert 2 <= looks <= (SWEEPS + 1) // 2, git.commands()
    journal = Journal(journal_path(daemon))
    try:
        made = [journal.provenance_at(sweep, None) for sweep in ids]
    finally:
        journal.close()
    assert all(m is not None and m["git_dirty"] is True for m in made), made
    assert all(m is not None and "+print('changed')" in (m["diff"] or "") for m in made)
