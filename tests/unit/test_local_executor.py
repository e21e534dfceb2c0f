"""The local executor with real child processes: exit codes, output, stops, process groups."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.local import MAX_LINE, LocalExecutor
from orchestrator.store.layout import RunLayout
from tests.procwait import gone_within

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
PY = sys.executable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Sink(LineSink):
    """Records every line, and the ``started`` call, in one list, in the order they came."""

    def __init__(self, on_line: Callable[[str, str], None] | None = None) -> None:
        self.record: list[tuple[str, str]] = []
        self.on_line = on_line
        self.pid: int | None = None

    async def line(self, stream: str, text: str) -> None:
        self.record.append((stream, text))
        if self.on_line is not None:
            self.on_line(stream, text)

    async def started(self, pid: int | None) -> None:
        self.record.append(("started", str(pid)))
        self.pid = pid
        await anyio.to_thread.run_sync(lambda: None)  # like a journal write: it yields

    def lines(self, stream: str) -> list[str]:
        return [text for name, text in self.record if name == stream]


class Runner:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.executor = LocalExecutor(self.home)
        self.layout = RunLayout(self.home, "run-1")

    def job(self, argv: list[str], cwd: Path | None = None, **env: str) -> Job:
        return Job(
            run_id="run-1",
            index=0,
            argv=argv,
            env={**os.environ, **env},
            cwd=cwd or self.tmp / "work",
            layout=self.layout,
        )

    def script(self, body: str, name: str = "child.py") -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(body))
        return str(path)

    async def run(
        self, job: Job, sink: Sink | None = None, stop: StopRequest | None = None
    ) -> tuple[Outcome, Sink]:
        sink = sink or Sink()
        with anyio.fail_after(20):
            outcome = await self.executor.execute(job, sink, stop or StopRequest(), sink.started)
        return outcome, sink


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


# --- exit codes and start failures ------------------------------------------------------------


async def test_exit_zero(runner: Runner) -> None:
    outcome, sink = await runner.run(runner.job([PY, "-c", "print('hi')"]))
    assert outcome == Outcome(0, error=None, stopped=False)
    assert sink.lines("stdout") == ["hi"]
    assert sink.lines("stderr") == []


async def test_a_non_zero_exit_code_is_returned(runner: Runner) -> None:
    outcome, sink = await runner.run(runner.job([PY, str(COMPONENTS / "output.py"), "exit", "3"]))
    assert outcome == Outcome(3, error=None, stopped=False)
    assert sink.lines("stderr") == ["failing now"]


async def test_a_missing_command_is_an_error_with_a_clear_reason(runner: Runner) -> None:
    outcome, sink = await runner.run(runner.job(["definitely-not-a-command-xyz", "--flag"]))
    assert outcome == Outcome(None, error="command not found: 'definitely-not-a-command-xyz'")
    assert sink.record == [], "never started: no started call, no output"


async def test_a_command_with_spaces_gets_a_hint_to_write_a_list(runner: Runner) -> None:
    outcome, _ = await runner.run(runner.job(["echo hello world"]))
    assert outcome.exit_code is None
    assert outcome.error == (
        "command not found: 'echo hello world'; a plain-string command is one argv item: "
        "write a list, or [/bin/sh, -c, ...] for a shell line"
    )


async def test_a_file_that_is_not_executable_is_an_error(runner: Runner) -> None:
    path = runner.script("print('never')\n", name="not_exec.py")
    os.chmod(path, 0o644)
    outcome, sink = await runner.run(runner.job([path]))
    assert outcome == Outcome(None, error=f"permission denied: {path!r} is not executable")
    assert sink.record == []


async def test_an_empty_command_is_an_error(runner: Runner) -> None:
    outcome, sink = await runner.run(runner.job([]))
    assert outcome.exit_code is None
    assert outcome.error is not None and "empty command" in outcome.error
    assert sink.record == []


async def test_a_stop_requested_before_start_starts_nothing(runner: Runner) -> None:
    marker = runner.tmp / "ran"
    stop = StopRequest()
    stop.request("early", grace=1.0)
    outcome, sink = await runner.run(
        runner.job([PY, "-c", f"open({str(marker)!r}, 'w').close()"]), stop=stop
    )
    assert outcome == Outcome(None, error=None, stopped=True)
    assert sink.record == []
    assert not marker.exists()


async def test_the_working_folder_is_created_and_the_environment_passed(runner: Runner) -> None:
    cwd = runner.tmp / "deep" / "work"
    child = runner.script("import os; print(os.getcwd()); print(os.environ['MY_VAR'])")
    outcome, sink = await runner.run(runner.job([PY, child], cwd=cwd, MY_VAR="v 1"))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == [str(cwd), "v 1"]
    assert runner.layout.outputs.is_dir()


# --- output -----------------------------------------------------------------------------------


async def test_started_gets_the_pid_before_any_output(runner: Runner) -> None:
    child = runner.script(
        """
        import os, sys
        print(os.getpid(), flush=True)
        print("err", file=sys.stderr, flush=True)
        """
    )
    outcome, sink = await runner.run(runner.job([PY, child]))
    assert outcome.exit_code == 0
    assert sink.pid is not None
    assert sink.record[0] == ("started", str(sink.pid))
    assert sorted(sink.record[1:]) == [("stderr", "err"), ("stdout", str(sink.pid))]


async def test_lines_reach_the_sink_in_order_per_stream_and_the_logs_verbatim(
    runner: Runner,
) -> None:
    outcome, sink = await runner.run(runner.job([PY, str(COMPONENTS / "output.py"), "lines"]))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == [f"out {i}" for i in range(5000)]
    assert sink.lines("stderr") == [f"err {i}" for i in range(5000)]
    assert runner.layout.stdout.read_bytes() == b"".join(b"out %d\n" % i for i in range(5000))
    assert runner.layout.stderr.read_bytes() == b"".join(b"err %d\n" % i for i in range(5000))


async def test_invalid_utf8_is_replaced_for_the_sink_and_kept_in_the_log(runner: Runner) -> None:
    outcome, sink = await runner.run(runner.job([PY, str(COMPONENTS / "output.py"), "binary"]))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == ["before \ufffd\ufffd after"]
    assert runner.layout.stdout.read_bytes() == b"before \xff\xfe after\n"


async def test_a_multibyte_character_split_across_reads_is_not_mangled(runner: Runner) -> None:
    child = runner.script(
        """
        import sys
        data = "é€😀".encode()
        for i in range(len(data)):
            sys.stdout.buffer.write(data[i : i + 1])
            sys.stdout.buffer.flush()
        sys.stdout.buffer.write(b"\\n")
        """
    )
    outcome, sink = await runner.run(runner.job([PY, child]))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == ["é€😀"]


async def test_the_last_line_without_a_newline_is_delivered(runner: Runner) -> None:
    child = runner.script(
        """
        import sys
        sys.stdout.write("first\\nlast without newline")
        sys.stderr.write("lonely")
        """
    )
    outcome, sink = await runner.run(runner.job([PY, child]))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == ["first", "last without newline"]
    assert sink.lines("stderr") == ["lonely"]
    assert runner.layout.stdout.read_bytes() == b"first\nlast without newline"


async def test_empty_lines_are_delivered_as_empty_strings(runner: Runner) -> None:
    child = runner.script("print('a'); print(); print(); print('b')")
    outcome, sink = await runner.run(runner.job([PY, child]))
    assert outcome.exit_code == 0
    assert sink.lines("stdout") == ["a", "", "", "b"]


def test_the_line_limit_is_one_mebibyte() -> None:
    assert MAX_LINE == 1024 * 1024


async def test_a_line_over_the_limit_is_split_into_limit_sized_pieces(runner: Runner) -> None:
    size = 2 * MAX_LINE + 10
    child = runner.script(
        f"""
        import sys
        sys.stdout.buffer.write(b"a" * {MAX_LINE} + b"b" * {MAX_LINE} + b"c" * 10 + b"\\n")
        sys.stdout.buffer.write(b"next\\n")
        """
    )
    outcome, sink = await runner.run(runner.job([PY, child]))
    assert outcome.exit_code == 0
    lines = sink.lines("stdout")
    assert [len(line) for line in lines] == [MAX_LINE, MAX_LINE, 10, 4]
    assert lines[0] == "a" * MAX_LINE
    assert lines[1] == "b" * MAX_LINE
    assert lines[2:] == ["c" * 10, "next"]
    assert runner.layout.stdout.stat().st_size == size + 1 + 5


async def test_a_huge_output_without_any_newline_is_split_and_logged_whole(
    runner: Runner,
) -> None:
    outcome, sink = await runner.run(runner.job([PY, str(COMPONENTS / "output.py"), "bigline"]))
    assert outcome.exit_code == 0
    assert [len(line) for line in sink.lines("stdout")] == [MAX_LINE] * 10
    assert set("".join(sink.lines("stdout"))) == {"x"}
    assert runner.layout.stdout.stat().st_size == 10 * 1024 * 1024


async def test_log_files_are_appended_to_on_a_second_attempt(runner: Runner) -> None:
    job = runner.job([PY, "-c", "print('attempt')"])
    await runner.run(job)
    outcome, _ = await runner.run(job)
    assert outcome.exit_code == 0
    assert runner.layout.stdout.read_bytes() == b"attempt\nattempt\n"


# --- stopping ---------------------------------------------------------------------------------


async def test_a_stop_sends_sigterm_first(runner: Runner) -> None:
    child = runner.script(
        """
        import signal, sys, time
        def on_term(signum, frame):
            print("got SIGTERM", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        while True:
            time.sleep(60)
        """
    )
    stop = StopRequest()

    def on_line(stream: str, text: str) -> None:
        if text == "ready":
            stop.request("test stop", grace=10.0)

    outcome, sink = await runner.run(runner.job([PY, child]), Sink(on_line), stop)
    assert outcome == Outcome(7, error=None, stopped=True)
    assert sink.lines("stdout") == ["ready", "got SIGTERM"]
    assert stop.reason == "test stop"


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(runner: Runner) -> None:
    stop = StopRequest()
    asked: list[float] = []

    def on_line(stream: str, text: str) -> None:
        if text == "ready" and not asked:
            asked.append(time.monotonic())
            stop.request("test stop", grace=0.2)

    outcome, _ = await runner.run(
        runner.job([PY, str(COMPONENTS / "ignore_term.py")]), Sink(on_line), stop
    )
    took = time.monotonic() - asked[0]
    assert outcome == Outcome(-signal.SIGKILL, error=None, stopped=True)
    assert outcome.exit_code == -9
    assert took >= 0.2, "SIGKILL must wait for the grace"
    assert took < 5


async def test_a_stop_with_no_grace_kills_at_once(runner: Runner) -> None:
    stop = StopRequest()

    def on_line(stream: str, text: str) -> None:
        if text == "ready":
            stop.request("now", grace=0)

    outcome, _ = await runner.run(
        runner.job([PY, str(COMPONENTS / "ignore_term.py")]), Sink(on_line), stop
    )
    assert outcome == Outcome(-signal.SIGKILL, error=None, stopped=True)


async def test_a_later_kill_now_cuts_a_long_grace_short(runner: Runner) -> None:
    stop = StopRequest()

    def on_line(stream: str, text: str) -> None:
        if text == "ready":
            stop.request("gently", grace=600.0)
            stop.request("now", grace=0)

    outcome, _ = await runner.run(
        runner.job([PY, str(COMPONENTS / "ignore_term.py")]), Sink(on_line), stop
    )
    assert outcome == Outcome(-signal.SIGKILL, error=None, stopped=True)
    assert stop.reason == "gently", "the first reason is kept"


async def test_a_grandchild_dies_with_the_group_when_the_run_is_stopped(
    runner: Runner,
) -> None:
    pid_file = runner.tmp / "gpid"
    stop = StopRequest()

    def on_line(stream: str, text: str) -> None:
        if text == "ready":
            stop.request("test stop", grace=0.2)

    outcome, _ = await runner.run(
        runner.job([PY, str(COMPONENTS / "grandchild.py"), str(pid_file), "wait"]),
        Sink(on_line),
        stop,
    )
    assert outcome.stopped
    assert outcome.exit_code == -signal.SIGTERM
    assert gone_within(int(pid_file.read_text()), 10)


async def test_a_grandchild_outliving_its_parent_is_killed_and_does_not_hold_us(
    runner: Runner,
) -> None:
    pid_file = runner.tmp / "gpid"
    begun = time.monotonic()
    outcome, sink = await runner.run(
        runner.job([PY, str(COMPONENTS / "grandchild.py"), str(pid_file), "exit"])
    )
    assert outcome == Outcome(0, error=None, stopped=False)
    assert sink.lines("stdout") == ["ready"]
    assert time.monotonic() - begun < 10, "the grandchild holds the pipes: we must not wait on it"
    assert gone_within(int(pid_file.read_text()), 10)


async def test_cancelling_the_executor_kills_the_whole_group(runner: Runner) -> None:
    pid_file = runner.tmp / "gpid"
    ready = anyio.Event()
    sink = Sink(lambda stream, text: ready.set() if text == "ready" else None)
    job = runner.job([PY, str(COMPONENTS / "grandchild.py"), str(pid_file), "wait"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.executor.execute, job, sink, StopRequest(), sink.started)
            await ready.wait()
            tg.cancel_scope.cancel()
    assert sink.pid is not None
    assert gone_within(sink.pid, 10)
    assert gone_within(int(pid_file.read_text()), 10)


async def test_no_output_reaches_the_sink_before_started_returns(runner: Runner) -> None:
    record: list[str] = []

    class Ordered(Sink):
        async def started(self, pid: int | None) -> None:
            record.append("started: enter")
            # Like a slow journal write: return only once the child has printed and exited
            # (a pidfd: it is the run supervisor's child, not ours), so a pump already reading
            # would have delivered its line by now.
            assert pid is not None
            assert await anyio.to_thread.run_sync(gone_within, pid, 10)
            await anyio.wait_all_tasks_blocked()
            record.append("started: return")

        async def line(self, stream: str, text: str) -> None:
            record.append(f"{stream}: {text}")

    outcome, _ = await runner.run(runner.job([PY, "-c", "print('early')"]), Ordered())
    assert outcome.exit_code == 0
    assert record == ["started: enter", "started: return", "stdout: early"]
