"""Log files made only when a run writes: a silent run has none; output flat out is logged
whole and handed over a chunk at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from orchestrator.engine.output import copy_logs
from orchestrator.executors.base import Job, LineSink, Outcome, StopRequest
from orchestrator.executors.local import LocalExecutor
from orchestrator.store.layout import RunLayout

PY = sys.executable


class Counting(LineSink):
    """Counts the lines and the calls that brought them."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.calls = 0

    async def chunk(self, stream: str, data: bytes | bytearray, start: int, end: int) -> None:
        self.calls += 1
        await super().chunk(stream, data, start, end)

    async def line(self, stream: str, text: str) -> None:
        self.lines[stream].append(text)


async def _started(pid: int | None) -> None:
    pass


def run(tmp_path: Path, code: str) -> tuple[Outcome, Counting, RunLayout]:
    home = tmp_path / "home"
    layout = RunLayout(home, "run-1")
    job = Job("run-1", 0, [PY, "-c", textwrap.dedent(code)], dict(os.environ), tmp_path, layout)
    sink = Counting()

    async def main() -> Outcome:
        with anyio.fail_after(30):
            return await LocalExecutor(home).execute(job, sink, StopRequest(), _started)

    return anyio.run(main), sink, layout


def test_a_run_that_writes_nothing_has_no_log_files(tmp_path: Path) -> None:
    outcome, sink, layout = run(tmp_path, "pass")
    assert outcome.exit_code == 0
    assert not layout.stdout.exists()
    assert not layout.stderr.exists()
    assert [p.name for p in layout.run_dir.iterdir()] == ["outputs"], "no file per run"
    assert sink.calls == 0


def test_a_log_file_is_made_for_the_stream_that_is_written(tmp_path: Path) -> None:
    outcome, sink, layout = run(tmp_path, "import sys; sys.stderr.write('only here\\n')")
    assert outcome.exit_code == 0
    assert not layout.stdout.exists()
    assert layout.stderr.read_bytes() == b"only here\n"
    assert sink.lines["stderr"] == ["only here"]


def test_output_flat_out_is_logged_whole_and_handed_over_by_the_chunk(tmp_path: Path) -> None:
    # 16 MB in 1 MB writes: large reads, logs written off the loop, buffers reused.
    code = """
        import sys
        block = b"".join(b"%07d\\n" % i for i in range(125000))
        for _ in range(16):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"tail without newline")
    """
    outcome, sink, layout = run(tmp_path, code)
    assert outcome.exit_code == 0
    expected = b"".join(b"%07d\n" % i for i in range(125000)) * 16 + b"tail without newline"
    assert layout.stdout.read_bytes() == expected
    lines = sink.lines["stdout"]
    assert len(lines) == 16 * 125000 + 1
    assert lines[:2] == ["0000000", "0000001"]
    assert lines[-2:] == ["0124999", "tail without newline"]
    assert lines == expected.decode().split("\n")
    assert sink.calls < len(lines) / 100  # no call per line


def test_a_cache_hit_of_a_silent_run_gets_no_log_files(tmp_path: Path) -> None:
    source, target = RunLayout(tmp_path, "old"), RunLayout(tmp_path, "new")
    source.run_dir.mkdir(parents=True)
    source.stderr.write_bytes(b"warned\n")
    copy_logs(source, target)
    assert not target.stdout.exists()
    assert target.stderr.read_bytes() == b"warned\n"
    assert target.outputs.is_dir()


@pytest.mark.parametrize("flags", [[], ["--stderr"], ["--tail", "3"], ["-f", "--stderr"]])
def test_logs_of_a_run_that_wrote_nothing_print_nothing(tmp_path: Path, flags: list[str]) -> None:
    spec = tmp_path / "silent.yaml"
    spec.write_text(
        textwrap.dedent(f"""
            version: 1.1
            kind: operation
            component:
              run: {{kind: job, container: {{command: [{json.dumps(PY)}, -c, pass]}}}}
        """)
    )
    home = str(tmp_path / "home")
    cli = [PY, "-m", "orchestrator"]
    done = subprocess.run(
        [*cli, "run", str(spec), "--json", "--home", home],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = json.loads(done.stdout)["runs"][0]["id"]
    assert not list((tmp_path / "home" / "runs" / run_id).glob("*.log"))
    logs = subprocess.run(
        [*cli, "logs", run_id, "--home", home, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "", "")


def test_a_working_folder_that_cannot_be_made_fails_the_run_unstarted(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    marker = tmp_path / "ran"
    home = tmp_path / "home"
    layout = RunLayout(home, "run-1")
    code = f"open({str(marker)!r}, 'w').close()"
    job = Job("run-1", 0, [PY, "-c", code], dict(os.environ), tmp_path / "file" / "sub", layout)
    pids: list[int | None] = []

    async def started(pid: int | None) -> None:
        pids.append(pid)

    async def main() -> Outcome:
        with anyio.fail_after(30):
            return await LocalExecutor(home).execute(job, Counting(), StopRequest(), started)

    outcome = anyio.run(main)
    assert outcome.exit_code is None
    assert outcome.error == (
        f"cannot prepare the run folder: [Errno 20] Not a directory: '{tmp_path / 'file' / 'sub'}'"
    )
    assert pids == [] and not marker.exists()
