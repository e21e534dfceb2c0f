"""One control connection to the run supervisor for all of a process's runs: answers reach the
right run, a long request is split and joined again, a later event loop takes the connection
over, a run cancelled while it starts is killed, and a stop is acted on from its request (no
watching task)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest

from orchestrator.executors import supervised
from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.exit_status import ExitStatus, statuses_in
from orchestrator.executors.local import LocalExecutor
from orchestrator.executors.supervisor import MAX_PART
from orchestrator.procinfo import start_time
from orchestrator.store.layout import RunLayout, exit_status_path
from tests.procwait import gone_within

PY = sys.executable


class Sink(LineSink):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pid: int | None = None
        self.up = anyio.Event()
        self.term = anyio.Event()

    async def line(self, stream: str, text: str) -> None:
        self.lines.append(text)
        if text == "up":
            self.up.set()
        elif text == "term":
            self.term.set()

    async def started(self, pid: int | None) -> None:
        self.pid = pid


def _job(home: Path, run_id: str, argv: list[str], env: dict[str, str] | None = None) -> Job:
    return Job(run_id, 0, argv, env or dict(os.environ), home / "work", RunLayout(home, run_id))


def test_concurrent_runs_each_get_their_own_answers(tmp_path: Path) -> None:
    """Twenty runs at once over one connection, ending in another order than they started:
    each gets its own pid, output and exit code, and the status file says the same."""
    count = 20
    outcomes: dict[int, Outcome] = {}
    sinks = {i: Sink() for i in range(count)}

    async def one(executor: LocalExecutor, i: int) -> None:
        # Later runs end first: the answers cross on the shared connection.
        code = f"import time; time.sleep({(count - i) * 0.01}); print({i}); raise SystemExit({i})"
        job = _job(tmp_path, f"r{i}", [PY, "-c", code])
        outcomes[i] = await executor.execute(job, sinks[i], StopRequest(), sinks[i].started)

    async def main() -> None:
        executor = LocalExecutor(tmp_path)
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, executor, i)

    anyio.run(main)
    assert outcomes == {i: Outcome(i) for i in range(count)}
    assert {i: s.lines for i, s in sinks.items()} == {i: [str(i)] for i in range(count)}
    assert len({s.pid for s in sinks.values()}) == count
    mine = exit_status_path(tmp_path, os.getpid(), start_time(os.getpid()))
    ids = [f"r{i}" for i in range(count)]
    assert statuses_in(mine.read_bytes(), ids) == {
        f"r{i}": ExitStatus(i, orphaned=False) for i in range(count)
    }


def test_a_request_longer_than_one_message_is_joined_again(tmp_path: Path) -> None:
    """An environment larger than a control message goes in several parts."""
    big = "x" * (3 * MAX_PART + 17)
    env = {**os.environ, "BIG": big}
    code = "import os; print(len(os.environ['BIG']))"
    sink = Sink()

    async def main() -> Outcome:
        job = _job(tmp_path, "r1", [PY, "-c", code], env)
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)

    assert anyio.run(main) == Outcome(0)
    assert sink.lines == [str(len(big))]


def test_a_later_event_loop_takes_the_connection_over(tmp_path: Path) -> None:
    """Two ``anyio.run`` in turn: the second's runs use the same supervisor."""

    async def main(run_id: str) -> Outcome:
        sink = Sink()
        job = _job(tmp_path, run_id, [PY, "-c", "pass"])
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)

    assert anyio.run(main, "r1") == Outcome(0)
    first = supervised._SUPERVISOR._pid
    assert anyio.run(main, "r2") == Outcome(0)
    assert first is not None and supervised._SUPERVISOR._pid == first


def test_a_run_cancelled_as_it_starts_is_killed(tmp_path: Path) -> None:
    """The starting task is cancelled before the pid comes back: the run, once started, is
    killed with its group and recorded as orphaned (before a run started after it ends)."""

    async def main() -> None:
        executor = LocalExecutor(tmp_path)
        first = _job(tmp_path, "r0", [PY, "-c", "pass"])
        assert await executor.execute(first, Sink(), StopRequest(), Sink().started) == Outcome(0)
        sink = Sink()
        job = _job(tmp_path, "r1", [PY, "-c", "import time; time.sleep(60)"])
        with anyio.CancelScope() as scope:
            scope.cancel()  # its first wait (the home's status file is open): the pid's answer
            await executor.execute(job, sink, StopRequest(), sink.started)
        assert sink.pid is None
        after = _job(tmp_path, "r2", [PY, "-c", "pass"])
        with anyio.fail_after(20):
            assert await executor.execute(after, Sink(), StopRequest(), Sink().started) == (
                Outcome(0)
            )

    anyio.run(main)
    mine = exit_status_path(tmp_path, os.getpid(), start_time(os.getpid()))
    assert statuses_in(mine.read_bytes(), ["r1"]) == {
        "r1": ExitStatus(-signal.SIGKILL, orphaned=True)
    }


def test_a_stop_is_acted_on_from_its_request(tmp_path: Path) -> None:
    """SIGTERM at the request; a second request with no grace kills at once."""
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: print('term', "
        "flush=True)); print('up', flush=True); time.sleep(60)"
    )
    sink = Sink()
    stop = StopRequest()

    async def main() -> Outcome:
        async def stop_when_up() -> None:
            await sink.up.wait()
            stop.request("enough", grace=30)
            await sink.term.wait()
            stop.request("now", grace=0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_up)
            job = _job(tmp_path, "r1", [PY, "-c", code])
            with anyio.fail_after(60):  # a guard against a hang only: a loaded disk is slow
                outcome = await LocalExecutor(tmp_path).execute(job, sink, stop, sink.started)
        return outcome

    assert anyio.run(main) == Outcome(-signal.SIGKILL, stopped=True)
    assert sink.lines == ["up", "term"]
    assert stop.reason == "enough"


def test_stop_request_listeners() -> None:
    """A listener hears every request, at once if one came before it listened; the events
    are made on first use and say what came before."""
    heard: list[tuple[str | None, bool]] = []

    async def main() -> None:
        stop = StopRequest()
        stop.request("first", grace=5)
        forget = stop.on_request(lambda: heard.append((stop.reason, stop.kill_is_due)))
        stop.request("second", grace=0)
        forget()
        stop.request("third", grace=0)
        assert stop.requested.is_set() and stop.kill_now.is_set()
        fresh = StopRequest()
        assert not fresh.requested.is_set()
        fresh.request("x", grace=1)
        assert fresh.requested.is_set() and not fresh.kill_now.is_set()

    anyio.run(main)
    assert heard == [("first", False), ("first", True)]


@pytest.mark.parametrize("word", [b"T", b"K", b"D"])
def test_a_word_about_a_run_already_reaped_is_ignored(tmp_path: Path, word: bytes) -> None:
    """A signal that crosses its run's exit on the connection does nothing (and the next run
    is served)."""

    async def main() -> list[Outcome]:
        outcomes = []
        for run_id in ("r1", "r2"):
            sink = Sink()
            job = _job(tmp_path, run_id, [PY, "-c", "pass"])
            outcomes.append(
                await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)
            )
            supervised._SUPERVISOR.say(word, 1)  # the first run's number, long reaped
        return outcomes

    assert anyio.run(main) == [Outcome(0), Outcome(0)]


def test_a_run_over_before_it_is_recorded_still_has_its_start_time(tmp_path: Path) -> None:
    """The start time recorded with a run's pid (recovery tells a recycled pid by it) is the
    supervisor's, read before the run could be reaped: a run that is already over when the
    orchestrator records it running still gets it (a read of /proc then finds nothing)."""
    code = "print(open('/proc/self/stat').read().rpartition(')')[2].split()[19])"
    sink = Sink()
    recorded: list[int | None] = []

    async def started(pid: int | None) -> None:
        assert pid is not None
        assert gone_within(pid, 10), "the run ends before it is recorded"
        recorded.append(start_time(pid))  # what the journal records with the pid

    async def main() -> Outcome:
        job = _job(tmp_path, "r1", [PY, "-c", code])
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), started)

    assert anyio.run(main) == Outcome(0)
    assert recorded == [int(sink.lines[0])]


def test_event_loops_running_at_once_get_a_supervisor_each(tmp_path: Path) -> None:
    """Two threads, each with its own event loop and a run held while the other starts its
    own: neither reads the other's answers."""
    both_running = threading.Barrier(2, timeout=20)
    outcomes: dict[str, Outcome] = {}
    supervisors: dict[str, int | None] = {}

    def thread(run_id: str) -> None:
        async def main() -> None:
            sink = Sink()
            job = _job(tmp_path, run_id, [PY, "-c", f"print({run_id!r})"])
            await anyio.to_thread.run_sync(both_running.wait)  # both loops are running now
            outcomes[run_id] = await LocalExecutor(tmp_path).execute(
                job, sink, StopRequest(), sink.started
            )
            assert sink.lines == [run_id]
            handle = supervised._HANDLES.for_loop(asyncio.get_running_loop())
            supervisors[run_id] = handle._pid
            await anyio.to_thread.run_sync(both_running.wait)  # neither loop is over yet

        anyio.run(main)

    threads = [threading.Thread(target=thread, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == {"a": Outcome(0), "b": Outcome(0)}
    assert None not in supervisors.values()
    assert supervisors["a"] != supervisors["b"]


FDS_OF_A_RUN = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import anyio
    from orchestrator.executors.base import Job, LineSink, StopRequest
    from orchestrator.executors.local import LocalExecutor
    from orchestrator.store.layout import RunLayout

    leak = os.open(os.devnull, os.O_RDONLY)  # inheritable, as a parent may leave one
    os.set_inheritable(leak, True)
    home = Path(sys.argv[1])

    class Sink(LineSink):
        async def line(self, stream, text):
            print(text, flush=True)

    async def started(pid):
        pass

    async def main():
        code = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
        argv = [sys.executable, "-c", code]
        job = Job("r1", 0, argv, dict(os.environ), home, RunLayout(home, "r1"))
        await LocalExecutor(home).execute(job, Sink(), StopRequest(), started)

    anyio.run(main)
    """
)


def test_a_run_inherits_nothing_but_its_stdio(tmp_path: Path) -> None:
    """A descriptor the orchestrator's parent left inheritable reaches neither the supervisor
    nor the runs (as ``Popen(close_fds=True)`` had it)."""
    script = tmp_path / "fds.py"
    script.write_text(FDS_OF_A_RUN)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [PY, str(script), str(tmp_path)], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # 0-2, and the descriptor listdir itself holds while it reads /proc/self/fd.
    assert result.stdout.split("\n")[0] == "[0, 1, 2, 3]"


def test_a_supervisor_warmed_up_before_the_loop_starts_the_loops_runs(tmp_path: Path) -> None:
    """``warm_up`` (what ``run`` calls before its imports) starts the supervisor with no event
    loop yet; the loop that runs the sweep adopts it: its runs are that process's children,
    and no second supervisor is started."""
    supervised.warm_up()
    warmed = supervised._SUPERVISOR._pid
    assert warmed is not None
    supervised.warm_up()  # already running: nothing new
    assert supervised._SUPERVISOR._pid == warmed
    sink = Sink()

    async def main() -> Outcome:
        job = _job(tmp_path, "warm", [PY, "-c", "import os; print(os.getppid())"])
        return await LocalExecutor(tmp_path).execute(job, sink, StopRequest(), sink.started)

    outcome = anyio.run(main)
    assert outcome.exit_code == 0
    assert sink.lines == [str(warmed)]
    assert supervised._SUPERVISOR._pid == warmed
