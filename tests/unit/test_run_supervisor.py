"""The run supervisor: exit statuses on disk when runs end, runs gone within a second of their
orchestrator's ``kill -9``, and a supervisor killed from outside replaced without losing track
of its runs' groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.executors import supervised
from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.exit_status import ExitStatus, read_exit_statuses, statuses_in
from orchestrator.executors.local import LocalExecutor
from orchestrator.executors.supervised import SupervisorLost
from orchestrator.procinfo import start_time
from orchestrator.store.layout import RunLayout, exit_status_path
from tests.procwait import alive, gone_within

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


class Sink(LineSink):
    def __init__(self) -> None:
        self.pid: int | None = None
        self.ready = anyio.Event()

    async def line(self, stream: str, text: str) -> None:
        if text == "ready":
            self.ready.set()

    async def started(self, pid: int | None) -> None:
        self.pid = pid


def _job(home: Path, run_id: str, argv: list[str]) -> Job:
    return Job(
        run_id=run_id,
        index=0,
        argv=argv,
        env=dict(os.environ),
        cwd=home / "work",
        layout=RunLayout(home, run_id),
    )


@pytest.mark.parametrize("code", [0, 3])
def test_the_exit_status_is_on_disk_when_the_run_ends(tmp_path: Path, code: int) -> None:
    job = _job(tmp_path, "r1", [PY, "-c", f"raise SystemExit({code})"])
    sink = Sink()

    async def main() -> Outcome:
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)

    assert anyio.run(main) == Outcome(code)
    # This process holds its status file (locked) while it lives: read it as it is now.
    mine = exit_status_path(tmp_path, os.getpid(), start_time(os.getpid()))
    assert statuses_in(mine.read_bytes(), ["r1"]) == {"r1": ExitStatus(code, orphaned=False)}
    assert not (job.layout.run_dir / "exit_status.json").exists(), "no file per run"


STAND_IN = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import anyio
    from orchestrator.executors.base import Job, LineSink, StopRequest
    from orchestrator.executors.local import LocalExecutor
    from orchestrator.store.layout import RunLayout, exit_status_path

    home = Path(sys.argv[1])
    argvs = [[sys.executable, sys.argv[2]], [sys.executable, "-c", "import time; time.sleep(60)"]]

    class Sink(LineSink):
        def __init__(self, i):
            self.i = i
        async def line(self, stream, text):
            print(f"{text} {self.i}", flush=True)
        async def started(self, pid):
            print(f"pid {self.i} {pid}", flush=True)

    async def main():
        executor = LocalExecutor(home)
        async def one(i, argv):
            layout = RunLayout(home, f"run-{i}")
            job = Job(f"run-{i}", i, argv, dict(os.environ), home / "work", layout)
            sink = Sink(i)
            await executor.execute(job, sink, StopRequest(), sink.started)
        async with anyio.create_task_group() as tg:
            for i, argv in enumerate(argvs):
                tg.start_soon(one, i, argv)

    anyio.run(main)
    """
)


def test_runs_die_within_a_second_of_their_orchestrators_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    home = tmp_path / "home"
    orchestrator = subprocess.Popen(
        [PY, str(script), str(home), str(COMPONENTS / "ignore_term.py")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        started = start_time(orchestrator.pid)
        assert orchestrator.stdout is not None
        pids: dict[int, int] = {}
        ready = False
        while len(pids) < 2 or not ready:  # each line: a wait on the pipe, bounded by timeout
            words = orchestrator.stdout.readline().split()
            assert words, "the stand-in orchestrator ended early"
            if words[0] == "pid":
                pids[int(words[1])] = int(words[2])
            ready = ready or words == ["ready", "0"]
        orchestrator.kill()
        killed = time.monotonic()
        orchestrator.wait(10)
        for pid in pids.values():
            assert gone_within(pid, max(0.0, killed + 1.0 - time.monotonic())), (
                "a run outlived its orchestrator by over a second"
            )
        deadline = time.monotonic() + 10
        path = exit_status_path(home, orchestrator.pid, started)
        assert read_exit_statuses(path, ["run-0", "run-1"], deadline) == {
            "run-0": ExitStatus(-signal.SIGKILL, orphaned=True),  # ignores SIGTERM: killed later
            "run-1": ExitStatus(-signal.SIGTERM, orphaned=True),
        }
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait(10)
        if orchestrator.stdout is not None:
            orchestrator.stdout.close()


def test_a_supervisor_killed_from_outside_takes_its_runs_and_is_replaced(tmp_path: Path) -> None:
    sink = Sink()
    lost: list[BaseException] = []

    async def main() -> Outcome:
        executor = LocalExecutor(tmp_path)
        job = _job(tmp_path, "r1", [PY, str(COMPONENTS / "ignore_term.py")])

        async def held() -> None:
            try:
                await executor.execute(job, sink, StopRequest(), sink.started)
            except BaseException as exc:  # an exception group from the executor's task groups
                lost.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(held)
            with anyio.fail_after(20):
                await sink.ready.wait()
            pid = supervised._SUPERVISOR._pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        again = _job(tmp_path, "r2", [PY, "-c", "print('ready')"])
        with anyio.fail_after(20):
            return await executor.execute(again, Sink(), StopRequest(), Sink().started)

    assert anyio.run(main) == Outcome(0), "a fresh supervisor runs the next job"
    (exc,) = lost
    while isinstance(exc, BaseExceptionGroup):
        (exc,) = exc.exceptions
    assert isinstance(exc, SupervisorLost)
    assert sink.pid is not None
    assert gone_within(sink.pid, 10), "the run its supervisor left behind is killed"
    assert not alive(sink.pid)


def test_a_run_whose_exit_status_cannot_be_recorded_is_not_started(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = _job(tmp_path, "r1", [PY, "-c", f"open({str(marker)!r}, 'w').close()"])
    (tmp_path / "exit_status").write_text("")  # its folder cannot be made
    sink = Sink()

    async def main() -> Outcome:
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)

    outcome = anyio.run(main)
    assert outcome.exit_code is None
    assert outcome.error is not None
    assert outcome.error.startswith("cannot prepare the run folder: [Errno 17] File exists")
    assert sink.pid is None and not marker.exists(), "it could have run twice: it does not run"
