"""What the run supervisor is told per run: a base environment once, then only each run's
differences from it (names changed, added, taken out), and a child's start time from the
boot-time clock, checked against ``/proc``."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.executors import supervised, supervisor
from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.local import LocalExecutor
from orchestrator.store.layout import RunLayout
from tests.procwait import gone_within

PY = sys.executable
#: Prints the run's environment (less what the interpreter may add: locale coercion).
SHOW_ENV = "import json, os; e = dict(os.environ); e.pop('LC_CTYPE', None); print(json.dumps(e))"


class Sink(LineSink):
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def line(self, stream: str, text: str) -> None:
        self.lines.append(text)


async def _nothing(pid: int | None) -> None:
    return None


def _seen_env(home: Path, run_id: str, env: dict[str, str]) -> dict[str, str]:
    """Run SHOW_ENV with ``env`` (on the event loop of the caller): the environment it saw."""

    async def main() -> dict[str, str]:
        sink = Sink()
        job = Job(run_id, 0, [PY, "-c", SHOW_ENV], env, home, RunLayout(home, run_id))
        assert await LocalExecutor(home).execute(job, sink, StopRequest(), _nothing) == Outcome(0)
        seen: dict[str, str] = json.loads(sink.lines[0])
        return seen

    return anyio.run(main)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every request sent to a supervisor, decoded."""
    sent: list[dict[str, Any]] = []
    real = supervised._Handle._send

    def send(control: Any, number: int, request: bytes, fds: list[int]) -> None:
        sent.append(json.loads(request))
        real(control, number, request, fds)

    monkeypatch.setattr(supervised._Handle, "_send", staticmethod(send))
    return sent


def test_each_run_sees_its_own_environment_from_a_base_sent_once(
    tmp_path: Path, requests: list[dict[str, Any]]
) -> None:
    """Runs that differ from the first in a changed name, an added one and a removed one
    (GPUs given to one run, hidden from another) see exactly their own environment; after
    the first, a request carries only those differences. A run whose environment is all
    different sends it as the new base, and the next runs differ from that one."""
    base = {k: v for k, v in os.environ.items() if k != "LC_CTYPE"}
    base.update({f"ORCH_TEST_{i}": str(i) for i in range(30)}, DROP_ME="x")
    changed = {**base, "ORCH_TEST_1": "changed", "CUDA_VISIBLE_DEVICES": "1"}
    dropped = {k: v for k, v in base.items() if k != "DROP_ME"} | {"CUDA_VISIBLE_DEVICES": ""}
    other = {"PATH": os.environ.get("PATH", os.defpath), "ONLY": "this"}
    after_other = {**other, "ONLY": "that"}
    envs = [base, changed, dropped, other, after_other, base]
    seen = [_seen_env(tmp_path, f"r{i}", env) for i, env in enumerate(envs)]
    assert seen == envs
    assert [r["base"] is not None for r in requests] == [True, False, False, True, False, True]
    assert requests[1]["env"] == {"ORCH_TEST_1": "changed", "CUDA_VISIBLE_DEVICES": "1"}
    assert requests[2]["env"] == {"CUDA_VISIBLE_DEVICES": ""}
    assert requests[2]["unset"] == ["DROP_ME"]
    assert requests[4]["env"] == {"ONLY": "that"}


def test_a_new_supervisor_is_sent_the_base_again(
    tmp_path: Path, requests: list[dict[str, Any]]
) -> None:
    """The supervisor killed between two runs: the next run's request, sent to its
    replacement, brings the whole base (the one its predecessor held is gone)."""
    env = {k: v for k, v in os.environ.items() if k != "LC_CTYPE"} | {"ORCH_TEST": "1"}
    assert _seen_env(tmp_path, "r1", env) == env
    pid = supervised._SUPERVISOR._pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert gone_within(pid, 10)
    second = env | {"ORCH_TEST": "2"}
    assert _seen_env(tmp_path, "r2", second) == second
    assert requests[-1]["base"] == second


def test_the_clock_gives_the_start_time_proc_gives(tmp_path: Path) -> None:
    """Children spawned between two reads of the boot-time clock in one tick started in that
    tick, as ``/proc`` says (every one checked here)."""
    clock = supervisor._SpawnClock()
    if not clock.trusted:
        pytest.skip("no boot-time clock here")
    clock.CHECK_EVERY = 1
    answered = 0
    for _ in range(40):
        before = clock.now()
        pid = os.posix_spawn("/bin/true", ["/bin/true"], os.environ)
        try:
            from_clock = clock.start_time(pid, before)
            assert from_clock == supervisor._start_time(pid)
            answered += before == clock.now()
        finally:
            os.waitpid(pid, 0)
    assert clock.trusted
    assert answered > 0


def test_one_disagreement_and_proc_answers_from_then_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check that finds ``/proc`` saying otherwise than the clock: ``/proc``'s answer is
    taken, and the clock is not trusted again. A check that ``/proc`` cannot answer (0)
    keeps it."""
    clock = supervisor._SpawnClock()
    clock.trusted, clock.CHECK_EVERY = True, 1
    monkeypatch.setattr(clock, "now", lambda: 100)
    says = [0, 12345, 12345]
    monkeypatch.setattr(supervisor, "_start_time", lambda pid: says.pop(0))
    assert clock.start_time(1, 100) == 100
    assert clock.trusted
    assert clock.start_time(1, 100) == 12345
    assert not clock.trusted
    assert clock.start_time(1, 100) == 12345
    assert says == []
