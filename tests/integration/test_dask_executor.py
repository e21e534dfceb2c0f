"""The Dask executor on a real ``LocalCluster`` of worker processes: output, exit codes,
metrics and early stopping, stops, a worker killed mid-run, GPU-style resources, the command
line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")

import itertools

import dask
from distributed import Future, LocalCluster

from orchestrator.diagnostics import is_ready_record
from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.dask_executor import (
    WORKER_LOST,
    DaskCluster,
    DaskExecutor,
    Settings,
    dask_resources,
)
from orchestrator.executors.dask_scratch import unpack_outputs
from orchestrator.spec import models as m
from orchestrator.spec.resources import ResourceRequest
from orchestrator.store.layout import RunLayout
from tests.conftest import CliResult
from tests.procwait import alive, gone_within

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
PY = sys.executable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """Two worker processes (each under a nanny), two threads and one "GPU" each; Dask's
    default scheduler settings, which re-run a lost worker's tasks elsewhere."""
    make: Any = LocalCluster
    with make(
        processes=True,
        n_workers=2,
        threads_per_worker=2,
        dashboard_address=None,
        host="127.0.0.1",
        resources={"GPU": 1},
    ) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
async def cluster(scheduler: str) -> AsyncIterator[DaskCluster]:
    async with DaskCluster(scheduler) as opened:
        yield opened


class Sink(LineSink):
    def __init__(self, on_line: Callable[[str, str], None] | None = None) -> None:
        self.lines: list[tuple[str, str]] = []
        self.on_line = on_line
        self.started: list[int | None] = []

    async def line(self, stream: str, text: str) -> None:
        self.lines.append((stream, text))
        if self.on_line is not None:
            self.on_line(stream, text)

    async def on_started(self, pid: int | None) -> None:
        self.started.append(pid)


def job(tmp_path: Path, argv: list[str], run_id: str = "run-1") -> Job:
    home = tmp_path / "home"
    return Job(run_id, 0, argv, dict(os.environ), tmp_path, RunLayout(home, run_id))


async def execute(
    executor: DaskExecutor, job: Job, sink: Sink, stop: StopRequest | None = None
) -> Outcome:
    with anyio.fail_after(45):
        return await executor.execute(job, sink, stop or StopRequest(), sink.on_started)


async def test_lines_in_order_and_complete_and_logs_byte_for_byte(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    run = job(tmp_path, [PY, str(COMPONENTS / "output.py"), "lines"])
    sink = Sink()
    outcome = await execute(cluster.executor(), run, sink)
    assert outcome.exit_code == 0 and outcome.error is None and not outcome.stopped
    assert sink.started == [None]  # the pid is the worker machine's: not journaled as ours
    out = [text for stream, text in sink.lines if stream == "stdout"]
    err = [text for stream, text in sink.lines if stream == "stderr"]
    assert out == [f"out {i}" for i in range(5000)]
    assert err == [f"err {i}" for i in range(5000)]
    assert run.layout.stdout.read_text() == "".join(f"out {i}\n" for i in range(5000))
    assert run.layout.stderr.read_text() == "".join(f"err {i}\n" for i in range(5000))
    assert outcome.cpu_s is not None and outcome.max_rss


async def test_exit_codes_start_errors_and_a_run_that_writes_nothing(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    executor = cluster.executor()
    sink = Sink()
    failed = await execute(
        executor, job(tmp_path, [PY, str(COMPONENTS / "output.py"), "exit", "3"], "a"), sink
    )
    assert failed == Outcome(3)
    assert sink.lines == [("stderr", "failing now")]
    killed = await execute(
        executor, job(tmp_path, [PY, str(COMPONENTS / "output.py"), "selfkill"], "b"), Sink()
    )
    assert killed == Outcome(-signal.SIGKILL)
    for code in (0, 5, 7):  # a command that is over before the worker heard it started
        quick = job(tmp_path, ["/bin/sh", "-c", f"exit {code}"], f"quick-{code}")
        assert await execute(executor, quick, Sink()) == Outcome(code)
    missing = await execute(executor, job(tmp_path, ["no-such-command-here"], "c"), Sink())
    assert missing.error == "command not found: 'no-such-command-here'"
    silent = job(tmp_path, [PY, "-c", "pass"], "d")
    assert await execute(executor, silent, Sink()) == Outcome(0)
    assert not silent.layout.stdout.exists() and not silent.layout.stderr.exists()
    assert silent.layout.outputs.is_dir()


async def test_one_supervisor_starts_every_run_of_a_worker_and_says_what_it_cannot_start(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """A supervisor per worker process, not per run (a Python start saved on every run)."""
    executor = cluster.executor()
    argv = [PY, "-c", "import os; print(os.getppid())"]
    parents = set()
    for index in range(4):
        sink = Sink()
        assert await execute(executor, job(tmp_path, argv, f"p{index}"), sink) == Outcome(0)
        parents.add(int(sink.lines[0][1]))
    assert len(parents) <= 2, "two workers, one supervisor each"
    missing = tmp_path / "missing"
    nowhere = Job("w", 0, [PY, "-c", "pass"], dict(os.environ), missing, RunLayout(tmp_path, "w"))
    outcome = await execute(executor, nowhere, Sink())
    assert outcome.error == (
        f"cannot start its working folder on the Dask worker: No such file or directory ({missing})"
    )


async def test_stop_reaches_a_child_ignoring_sigterm_as_sigkill_after_the_grace(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    stop = StopRequest()
    pids: list[int] = []

    def on_line(stream: str, text: str) -> None:
        if text.startswith("ready "):
            pids.append(int(text.split()[1]))
            stop.request("test stop", 0.5)

    markers = tmp_path / "markers"
    run = job(tmp_path, [PY, str(COMPONENTS / "remote_child.py"), "ignore-term", str(markers)])
    outcome = await execute(cluster.executor(), run, Sink(on_line), stop)
    assert outcome.stopped and outcome.exit_code == -signal.SIGKILL
    assert gone_within(pids[0], 10)


async def test_a_stop_before_the_command_starts_runs_nothing(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    stop = StopRequest()
    stop.request("early", 1.0)
    markers = tmp_path / "markers"
    run = job(tmp_path, [PY, str(COMPONENTS / "remote_child.py"), "wait", str(markers)])
    assert await execute(cluster.executor(), run, Sink(), stop) == Outcome(None, stopped=True)
    assert not markers.exists()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _gone_or_zombie(pid: int, timeout: float) -> bool:
    """A supervisor whose worker (its parent) was killed is re-parented and may linger as a
    zombie: that is not a running orphan."""
    return gone_within(pid, timeout) or not alive(pid)


async def test_a_worker_killed_mid_run_is_worker_lost_never_a_second_execution(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """The attempt's future is also held here, so Dask does run the task again on the other
    worker (as it would for any client holding it): that execution must find the attempt
    claimed and start nothing."""
    markers = tmp_path / "markers"
    run = job(tmp_path, [PY, str(COMPONENTS / "remote_child.py"), "wait", str(markers)])
    seen: dict[str, int] = {}
    held: list[Any] = []

    def on_line(stream: str, text: str) -> None:
        if text.startswith("ready "):
            child = int(text.split()[1])
            supervisor = _parent(child)
            seen.update(child=child, supervisor=supervisor, worker=_parent(supervisor))
            (key,) = [k for k in cluster._attempts if run.run_id in k]
            held.append(Future(key, cluster.client))
            os.kill(seen["worker"], signal.SIGKILL)

    outcome = await execute(cluster.executor(), run, Sink(on_line))
    assert outcome.exit_code is None and outcome.error is not None
    assert outcome.error.startswith(f"{WORKER_LOST}: the Dask worker tcp://127.0.0.1:")
    with anyio.fail_after(30):
        again = await held[0]
    held[0].release()
    assert again == {"status": "duplicate"}
    assert markers.read_text().split() == [str(seen["child"])]  # one execution only
    assert gone_within(seen["child"], 10), "the command outlived its worker"
    assert _gone_or_zombie(seen["supervisor"], 10)


async def test_gpu_resources_two_runs_asking_one_gpu_never_share_a_worker(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    executor = cluster.executor(ResourceRequest(gpu_milli=1000))
    stamps = tmp_path / "stamps"
    argv = [PY, str(COMPONENTS / "gpu_stamp.py"), str(stamps), "0.3"]
    outcomes: list[Outcome] = []

    async def one(index: int) -> None:
        outcomes.append(await execute(executor, job(tmp_path, argv, f"gpu-{index}"), Sink()))

    async with anyio.create_task_group() as tg:
        for index in range(4):  # 2 threads per worker: without resources, 2 at once each
            tg.start_soon(one, index)
    assert outcomes == [Outcome(0)] * 4
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for line in stamps.read_text().splitlines():
        began, ended, worker = line.split()
        by_worker.setdefault(worker, []).append((float(began), float(ended)))
    for spans in by_worker.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"two runs held one worker's GPU at once: {spans}"


async def test_a_request_no_worker_offers_fails_at_once(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    executor = cluster.executor(ResourceRequest(gpu_milli=2000))
    outcome = await execute(executor, job(tmp_path, [PY, "-c", "pass"]), Sink())
    assert outcome.error is not None and outcome.error.startswith("no_worker: ")
    assert "GPU=2" in outcome.error


def test_resources_map_onto_dask_worker_resources() -> None:
    request = ResourceRequest(gpu_milli=500, cpu_milli=2500, memory=4 << 30)
    assert dask_resources(request, {"GPU"}) == {"GPU": 0.5}
    assert dask_resources(request, {"GPU", "CPU", "MEM"}) == {
        "GPU": 0.5,
        "CPU": 2.5,
        "MEM": float(4 << 30),
    }
    assert dask_resources(ResourceRequest(), {"GPU", "CPU"}) == {}


# ---------------------------------------------------------------------- the command line


def _spec(write: Callable[..., Path], values: list[dict[str, str]], rules: str = "") -> Path:
    """One run at a time, each reporting ``accuracy`` values 0.2 s apart."""
    early = f"earlyStopping: {rules}" if rules else ""
    return write(f"""
        version: 1.1
        kind: operation
        matrix:
          kind: mapping
          concurrency: 1
          values: {json.dumps(values)}
          {early}
        component:
          inputs: [{{name: vals, type: str}}]
          run:
            kind: job
            container:
              command: ["{PY}", "{COMPONENTS / "schedule.py"}", accuracy, "{{{{ vals }}}}",
                        "0.2"]
    """)


def test_metrics_and_early_stopping_through_the_command_line(
    scheduler: str, write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    tail = ",".join(["0.5"] * 100)  # 20 s more unless the stop reaches it
    values = [{"vals": "0.3,0.4"}, {"vals": f"0.5,0.95,{tail}"}]
    rules = "[{kind: metric_early_stopping, metric: accuracy, value: 0.9, optimization: maximize}]"
    home = tmp_path / "home"
    result = cli(
        str(_spec(write, values, rules)),
        "--json",
        "--no-plugin",
        "cache",
        "--executor",
        "dask",
        "--scheduler",
        scheduler,
        "--home",
        str(home),
    )
    summary = json.loads(result.out)
    runs = {r["index"]: r for r in summary["runs"]}
    assert runs[0]["state"] == "succeeded" and runs[0]["metrics"] == {"accuracy": 0.4}
    assert runs[1]["state"] == "stopped" and runs[1]["metrics"]["accuracy"] == 0.95
    assert "run 1 reported accuracy = 0.95 (>= 0.9) at step 2" in result.err
    assert result.code == 0 and summary["state"] == "succeeded"
    log = (home / "runs" / runs[0]["id"] / "stdout.log").read_text().splitlines()
    assert [json.loads(line)["metrics"]["accuracy"] for line in log] == [0.3, 0.4]


def test_a_lost_worker_fails_the_attempt_and_max_retries_runs_it_again(
    scheduler: str, write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    markers = tmp_path / "markers"
    spec = write(f"""
        version: 1.1
        kind: operation
        termination: {{maxRetries: 1}}
        component:
          run:
            kind: job
            container:
              command: ["{PY}", "{COMPONENTS / "kill_my_worker.py"}", "{markers}"]
    """)
    home = tmp_path / "home"
    args = ["--json", "--executor", "dask", "--scheduler", scheduler, "--home", str(home)]
    result = cli("run", str(spec), *args)
    (run,) = json.loads(result.out)["runs"]
    assert result.code == 0 and run["state"] == "succeeded", result.err
    assert len(markers.read_text().split()) == 2  # the lost attempt, then the retry: no more
    with contextlib.closing(sqlite3.connect(home / "journal.sqlite")) as journal:
        (reason,) = journal.execute(
            "SELECT reason FROM transitions WHERE run_id = ? AND to_state = 'retrying'",
            (run["id"],),
        ).fetchone()
    assert reason.startswith(f"{WORKER_LOST}: the Dask worker tcp://127.0.0.1:")
    assert reason.endswith("; retry 1 of 1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler goes with --executor dask"),
        (["--executor", "dask", "--scheduler", "127.0.0.1:8786"], "expected tcp://HOST:PORT"),
        (
            ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--gpus", "0"],
            "--gpus applies to local runs",
        ),
    ],
)
def test_bad_executor_options_are_one_line_exit_2(
    args: list[str],
    message: str,
    write: Callable[..., Path],
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    spec = _spec(write, [{"vals": "1"}])
    result = cli("run", str(spec), "--home", str(tmp_path / "home"), *args)
    assert result.code == 2 and message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_an_unreachable_scheduler_is_one_line_exit_1(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    with contextlib.closing(__import__("socket").socket()) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # bound, not listening: refused
        spec = _spec(write, [{"vals": "1"}])
        result = cli(
            "run",
            str(spec),
            "--home",
            str(tmp_path / "home"),
            "--executor",
            "dask",
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
        )
    assert result.code == 1
    assert result.err.strip() == (
        f"orchestrator: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "
        "Connection refused"
    )


def _read_fifo(path: Path, into: list[str]) -> None:
    """The first line written to the FIFO (blocks until a writer opens it)."""
    with open(path) as fifo:
        into.append(fifo.readline())


def _release_fifo(path: Path) -> None:
    """Let a reader still blocked in ``open`` go (it then reads nothing)."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_an_orchestrator_killed_mid_run_leaves_no_command_running(
    scheduler: str, write: Callable[..., Path], tmp_path: Path
) -> None:
    """kill -9 of the orchestrator: the scheduler drops its client's tasks, and the task
    stops its command (SIGTERM)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    markers = tmp_path / "markers"
    spec = write(f"""
        version: 1.1
        kind: operation
        component:
          run:
            kind: job
            container:
              command: ["{PY}", "{COMPONENTS / "remote_child.py"}", wait, "{markers}", "{fifo}"]
    """)
    command = [PY, "-m", "orchestrator", "run", str(spec), "--home", str(tmp_path / "home")]
    command += ["--executor", "dask", "--scheduler", scheduler]
    result: list[str] = []
    reader = threading.Thread(target=_read_fifo, args=(fifo, result), daemon=True)
    reader.start()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            reader.join(45)
            assert result and result[0], "the run never started"
            child = int(result[0])
            assert alive(child)
            proc.kill()
        finally:
            _release_fifo(fifo)
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert gone_within(child, 20), "the command outlived its orchestrator"


def test_the_daemon_runs_its_sweeps_on_the_cluster(scheduler: str) -> None:
    """``daemon --executor dask``: a submitted sweep's runs go to the workers; their logs and
    metrics land in the daemon's home as for local runs."""
    from tests.integration.test_daemon import Daemon, sse

    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    command = [PY, "-m", "orchestrator", "daemon", "--home", str(home), "--max-runs", "4"]
    command += ["--executor", "dask", "--scheduler", scheduler]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    drain: threading.Thread | None = None
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the daemon logs "ready" once it serves
            if is_ready_record(line):
                break
        else:
            raise AssertionError(f"daemon did not start: {proc.wait()}")
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        script = "import json; print(json.dumps({'metrics': {'n': {{ n }}}}))"
        text = (
            "version: 1.1\nkind: operation\n"
            "matrix: {kind: mapping, values: [{n: 1}, {n: 2}]}\n"
            "component:\n  inputs: [{name: n, type: int}]\n"
            f"  run: {{kind: job, container: {{command: {json.dumps([PY, '-c', script])}}}}}\n"
        )
        with Daemon(home, proc).unix() as client:
            sweep = client.post("/api/v1/sweeps", json={"spec": text}).json()["sweep"]
            headers = {"Last-Event-ID": "0"}
            with client.stream("GET", "/api/v1/events", headers=headers) as events:
                for kind, data in sse(events):
                    if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                        assert json.loads(data)["state"] == "succeeded"
                        break
            runs = client.get(f"/api/v1/sweeps/{sweep}").json()["runs"]
        assert sorted(r["metrics"]["n"] for r in runs) == [1, 2]
        for run in runs:
            log = home / "runs" / run["id"] / "stdout.log"
            assert json.loads(log.read_text())["metrics"]["n"] == run["metrics"]["n"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, "a SIGTERM ends the daemon cleanly"
        if drain is not None:
            drain.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def test_help_imports_no_dask() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main([c, '--help']) for c in ('run', 'daemon', 'dask-local')]\n"
        "print(codes, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed')))\n"
    )
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "[0, 0, 0] []\n", proc.stderr


# ---------------------------------------------------------------------- homes not shared


def home_job(tmp_path: Path, argv: list[str], run_id: str, init: list[m.Init] | None = None) -> Job:
    """A job as the engine makes it: the ``ORCHESTRATOR_*`` paths of its run folder in the
    orchestrator's home."""
    layout = RunLayout(tmp_path / "home", run_id)
    env = {
        **os.environ,
        "ORCHESTRATOR_RUN_ID": run_id,
        "ORCHESTRATOR_RUN_DIR": str(layout.run_dir),
        "ORCHESTRATOR_OUTPUTS_PATH": str(layout.outputs),
    }
    return Job(run_id, 0, argv, env, tmp_path, layout, list(init or []))


def _git_repo(folder: Path) -> Path:
    folder.mkdir()
    (folder / "train.py").write_text("print('training')\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*git, *args], cwd=folder, check=True, capture_output=True)
    return folder


def _said(sink: Sink, word: str) -> list[str]:
    return [text.split(" ", 1)[1] for _, text in sink.lines if text.startswith(f"{word} ")]


SCRATCH_RUN = str(COMPONENTS / "dask_scratch_run.py")


async def test_a_home_the_worker_does_not_see_runs_in_a_scratch_folder_and_outputs_come_back(
    scheduler: str, tmp_path: Path
) -> None:
    """``scratch=True`` (dask config ``orchestrator.scratch``) makes the worker act as one that
    does not see the home: init runs there, the command runs in a scratch folder with its
    paths mapped, and ``outputs/`` (no links) lands in the home's run folder."""
    repo = _git_repo(tmp_path / "origin")
    init = [
        m.Init(file=m.FileInit(content="hello", filename="greeting.txt", chmod="750")),
        m.Init(git=m.GitInit(url=str(repo)), path="repo"),
    ]
    run = home_job(tmp_path, [PY, SCRATCH_RUN, "PLACEHOLDER"], "scratch-1", init)
    run.argv[-1] = str(run.layout.outputs)  # as globals.run_outputs_path renders it
    sink = Sink()
    async with DaskCluster(scheduler, scratch=True) as opened:
        outcome = await execute(opened.executor(), run, sink)
    assert outcome == Outcome(0), outcome
    (scratch_dir,) = _said(sink, "run_dir")
    assert scratch_dir != str(run.layout.run_dir)
    assert _said(sink, "outputs") == [f"{scratch_dir}/outputs {scratch_dir}/outputs"]
    assert _said(sink, "greeting") == ["hello 0o750"]
    assert _said(sink, "repo") == ["train.py"]
    assert not await anyio.Path(scratch_dir).exists(), "the scratch folder outlived its run"
    assert not run.layout.artifacts.exists(), "init ran here, not on the worker"
    outputs = run.layout.outputs
    assert (outputs / "a.txt").read_text() == "from the argument\n"
    assert (outputs / "sub" / "deeper" / "b.bin").read_bytes() == bytes(range(256)) * 4
    assert (outputs / "empty").is_dir()
    assert not (outputs / "link").is_symlink() and not (outputs / "link").exists()
    assert not (outputs / "inner-link").exists()
    assert f"run_dir {scratch_dir}\n" in run.layout.stdout.read_text()
    assert run.placement is not None and run.placement.worker.startswith("tcp://127.0.0.1:")
    assert run.placement.host == socket.gethostname()
    assert sink.started == [None]


async def test_what_a_scratch_run_takes_and_ships_back_is_bounded(
    scheduler: str, tmp_path: Path
) -> None:
    small = {"outputs_max_files": 5, "init_max_bytes": 4}
    async with DaskCluster(scheduler, scratch=True, **small) as opened:
        fits = home_job(tmp_path, [PY, SCRATCH_RUN, "PLACEHOLDER"], "fits")
        fits.argv[-1] = str(fits.layout.outputs)
        assert await execute(opened.executor(), fits, Sink()) == Outcome(0)
        six = home_job(tmp_path, [PY, SCRATCH_RUN, "PLACEHOLDER", "1"], "six")
        six.argv[2] = str(six.layout.outputs)
        too_many = await execute(opened.executor(), six, Sink())
        greeting = [m.Init(file=m.FileInit(content="hello", filename="greeting.txt"))]
        big_init = home_job(tmp_path, [PY, "-c", "print('ran')"], "big-init", greeting)
        sink = Sink()
        refused = await execute(opened.executor(), big_init, sink)
    assert too_many.error == (
        "outputs_not_shipped: outputs/ holds more than 5 files and folders, the most a Dask "
        "worker that does not share the home ships back (dask config "
        "orchestrator.outputs-max-files); the command exited 0"
    )
    assert not (six.layout.outputs / "a.txt").exists()
    assert refused.error is not None and refused.error.startswith(
        "init_too_large: the run's init files come to 5 bytes, more than the 4 "
    )
    assert sink.lines == [], "the command ran"
    big = home_job(tmp_path, [PY, SCRATCH_RUN, "PLACEHOLDER"], "big")
    big.argv[-1] = str(big.layout.outputs)
    async with DaskCluster(scheduler, scratch=True, outputs_max_bytes=1000) as opened:
        too_big = await execute(opened.executor(), big, Sink())
    assert too_big.error is not None
    assert too_big.error.startswith("outputs_not_shipped: outputs/ holds more than 1,000 bytes")


def test_settings_come_from_the_dask_config_unless_given() -> None:
    config = {"no-worker-wait": "2m", "outputs-max-bytes": "1GiB", "scratch": "true"}
    with dask.config.set({f"orchestrator.{key}": value for key, value in config.items()}):
        settings = Settings.configured({"init_max_bytes": 5})
    assert settings == Settings(
        scratch=True,
        no_worker_wait=120.0,
        init_max_bytes=5,
        outputs_max_files=1000,
        outputs_max_bytes=1 << 30,
    )


def test_unpacking_outputs_never_leaves_the_outputs_folder(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (outputs / "away").symlink_to(tmp_path / "elsewhere")
    for name in ("../escape", "/etc/x", "a/../../b", "", "a//b"):
        with pytest.raises(ValueError, match="leaves outputs/"):
            unpack_outputs(outputs, [(name, 0o644, b"x")])
    with pytest.raises(ValueError, match="is not a folder here"):
        unpack_outputs(outputs, [("away/x", 0o644, b"x")])
    with pytest.raises(OSError):  # a link where the file goes: O_NOFOLLOW
        unpack_outputs(outputs, [("away", 0o644, b"x")])
    assert not list((tmp_path / "elsewhere").iterdir())
    unpack_outputs(outputs, [("ok", 0o4777, b"y")])
    assert (outputs / "ok").stat().st_mode & 0o7777 == 0o755


# ---------------------------------------------------------------------- workers that leave


@pytest.fixture
def gpu2_worker(scheduler: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts workers (no nanny: a killed one does not come back) with GPU=2, which the
    cluster's own workers lack, and one thread each."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        command = [PY, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "1"]
        command += ["--resources", "GPU=2", "--no-nanny", "--host", "127.0.0.1"]
        command += ["--no-dashboard"]
        out = subprocess.DEVNULL
        started.append(subprocess.Popen(command, stdout=out, stderr=out))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()
            worker.wait()


async def _b_waits_for_a_lost_worker(
    opened: DaskCluster,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    tmp_path: Path,
    b_argv: list[str],
    then: Callable[[], Any] | None = None,
) -> dict[str, Outcome]:
    """Run A holds the only GPU=2 worker and run B waits for it; then the worker is killed
    (and ``then`` called)."""
    worker = await anyio.to_thread.run_sync(start_worker)
    await opened.client.wait_for_workers(3, timeout=45)
    executor = opened.executor(ResourceRequest(gpu_milli=2000))
    a_ready, b_submitted = anyio.Event(), anyio.Event()
    open_attempt = opened.open

    def opening(key: str) -> Any:  # the attempt is submitted right after it is opened
        if "-b-" in key:
            b_submitted.set()
        return open_attempt(key)

    opened.open = opening  # type: ignore[method-assign]

    def on_line(stream: str, text: str) -> None:
        if text.startswith("ready "):
            a_ready.set()

    a_argv = [PY, str(COMPONENTS / "remote_child.py"), "wait", str(tmp_path / "markers")]
    outcomes: dict[str, Outcome] = {}

    async def one(name: str, argv: list[str], sink: Sink) -> None:
        outcomes[name] = await execute(executor, job(tmp_path, argv, name), sink)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "a", a_argv, Sink(on_line))
        with anyio.fail_after(45):
            await a_ready.wait()
            tg.start_soon(one, "b", b_argv, Sink())
            await b_submitted.wait()
            # The scheduler takes a client's tasks in order: once this one ran, it has B.
            assert await opened.client.submit(int, 1, pure=False) == 1
        worker.kill()
        if then is not None:
            await anyio.to_thread.run_sync(then)
    assert outcomes["a"].error is not None and outcomes["a"].error.startswith(WORKER_LOST)
    return outcomes


async def test_a_run_waiting_for_a_worker_that_left_fails_after_the_wait(
    scheduler: str, gpu2_worker: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """B, which Dask would keep in its ``no-worker`` state for ever, fails with
    ``no_worker`` once the wait is over."""
    markers = tmp_path / "b-markers"
    b_argv = [PY, str(COMPONENTS / "remote_child.py"), "wait", str(markers)]
    async with DaskCluster(scheduler, no_worker_wait=0.5) as opened:
        outcomes = await _b_waits_for_a_lost_worker(opened, gpu2_worker, tmp_path, b_argv)
    assert outcomes["b"] == Outcome(
        None, error="no_worker: no Dask worker offers GPU=2 any more (waited 0.5 s for one)"
    )
    assert not markers.exists()  # B never ran


async def test_a_run_waiting_for_a_worker_that_left_runs_on_one_that_comes_in_time(
    scheduler: str, gpu2_worker: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    b_argv = [PY, "-c", "print('b ran')"]
    async with DaskCluster(scheduler, no_worker_wait=60) as opened:
        outcomes = await _b_waits_for_a_lost_worker(
            opened, gpu2_worker, tmp_path, b_argv, then=gpu2_worker
        )
    assert outcomes["b"] == Outcome(0)


# ---------------------------------------------------------------------- where a run ran


def test_where_a_run_ran_is_journaled_and_shown_and_a_scratch_run_works_as_a_local_one(
    scheduler: str, write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Through the command line, with the dask config's ``orchestrator.scratch``: the run's
    init and command run in a scratch folder on the worker; its outputs, logs and metrics are
    in the home; ``show`` says where it ran (a local run: nowhere)."""
    spec = write(f"""
        version: 1.1
        kind: operation
        component:
          run:
            kind: job
            init:
              - file: {{content: hello, filename: greeting.txt}}
            container:
              command: ["{PY}", "{SCRATCH_RUN}", "{{{{ globals.run_outputs_path }}}}"]
    """)
    home = tmp_path / "home"
    dask_args = ["--executor", "dask", "--scheduler", scheduler]
    with dask.config.set({"orchestrator.scratch": True}):
        result = cli("run", str(spec), "--json", *dask_args, "--home", str(home))
    (run,) = json.loads(result.out)["runs"]
    assert result.code == 0 and run["state"] == "succeeded", result.err
    outputs = home / "runs" / run["id"] / "outputs"
    assert (outputs / "a.txt").read_text() == "from the argument\n"
    logs = cli("logs", run["id"], "--home", str(home))
    assert "greeting hello" in logs.out
    shown = cli("show", "--run", run["id"], "--home", str(home))
    (ran_on,) = [line.split(None, 2)[2] for line in shown.out.splitlines() if "ran on" in line]
    assert ran_on.startswith(f"{socket.gethostname()} (tcp://127.0.0.1:")
    placement = json.loads(cli("show", "--run", run["id"], "--json", "--home", str(home)).out)
    assert placement["placement"] == {
        "worker": ran_on.split("(")[1][:-1],
        "host": socket.gethostname(),
    }
    local_home = tmp_path / "local"
    local = json.loads(cli("run", str(spec), "--json", "--home", str(local_home)).out)
    local_id = local["runs"][0]["id"]
    local_shown = cli("show", "--run", local_id, "--home", str(local_home))
    assert "ran on" not in local_shown.out and local["runs"][0]["state"] == "succeeded"
    body = json.loads(cli("show", "--run", local_id, "--json", "--home", str(local_home)).out)
    assert body["placement"] is None


def test_a_pipelines_nodes_run_on_the_cluster_and_pass_outputs_downstream(
    scheduler: str, write: Callable[..., Path], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """``--executor dask`` sends every node's runs to the workers (each journaled with the
    worker it ran on), and an output still reaches the next node."""
    said = "import json, sys; print(json.dumps({'outputs': {'said': sys.argv[1] + '!'}}))"
    spec = write(f"""
        version: 1.1
        kind: component
        run:
          kind: dag
          operations:
            - name: first
              dagRef: echo
              params: {{word: {{value: hello}}}}
            - name: second
              dagRef: echo
              params: {{word: {{ref: ops.first, value: outputs.said}}}}
          components:
            - name: echo
              inputs: [{{name: word, type: str}}]
              outputs: [{{name: said, type: str}}]
              run:
                kind: job
                container:
                  command: ["{PY}", -c, "{said}", "{{{{ word }}}}"]
    """)
    home = tmp_path / "home"
    args = ["--json", "--executor", "dask", "--scheduler", scheduler, "--home", str(home)]
    result = cli("run", str(spec), *args)
    assert result.code == 0, result.err
    nodes = {n["name"]: n for n in json.loads(result.out)["nodes"]}
    assert [r["outputs"] for r in nodes["second"]["runs"]] == [{"said": "hello!!"}]
    with contextlib.closing(sqlite3.connect(home / "journal.sqlite")) as journal:
        workers = journal.execute("SELECT worker FROM placements").fetchall()
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for (w,) in workers)
