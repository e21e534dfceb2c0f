"""The command line's shape: version, subcommands, error-to-exit-code mapping, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

import orchestrator
from orchestrator import cli
from orchestrator.cli import run_cmds
from orchestrator.exceptions import NotFoundError, SweepBusyError, UnavailableError
from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "examples" / "quickstart" / "mapping.yaml")
SUBCOMMANDS = [
    "plan",
    "run",
    "resume",
    "rerun",
    "ls",
    "show",
    "report",
    "daemon",
    "submit",
    "stop",
    "web",
    "plugins",
    "cache",
    "logs",
]
HEAVY = {"anyio", "msgspec", "jinja2", "httpx", "starlette", "uvicorn", "sqlite3", "yaml"}


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_version_is_the_package_metadata() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"orchestrator {version('orchestrator')}\n"
    assert proc.stderr == ""
    assert orchestrator.__version__ == version("orchestrator")


def test_console_script_is_the_program() -> None:
    """The command runs :func:`cli.program`: :func:`cli.main` in a process of its own (it may
    settle its heap; ``main`` called from other code does not)."""
    (script,) = entry_points(group="console_scripts", name="orchestrator")
    assert script.value == "orchestrator.cli:program"
    assert script.load() is cli.program


def test_subcommands_are_listed_in_help_order() -> None:
    help_text = cli.build_parser().format_help()
    positions = [help_text.index(f"\n    {name} ") for name in SUBCOMMANDS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: orchestrator {command} ")
    assert "--home HOME" in proc.stdout


@pytest.mark.parametrize("command", ["run", "resume", "rerun"])
def test_run_commands_take_log_json(command: str) -> None:
    proc = run_cli(command, "--help")
    assert "--log-json FILE" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["daemon", "--help"]])
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({args!r})\n"
        f"print(code, sorted({HEAVY!r} & set(sys.modules)))\n"
    )
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0 []\n"


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    code = main(['--version'])\n"
        f"print(code, out.getvalue().strip(), sorted({HEAVY!r} & set(sys.modules)))\n"
    )
    proc = python(code)
    assert proc.stdout == f"0 orchestrator {version('orchestrator')} []\n", proc.stderr


def _raising(error: BaseException) -> Callable[..., int]:
    def command(*args: Any) -> int:
        raise error

    return command


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SweepBusyError("sweep abc123 is still running"), 1),
        (UnavailableError("the daemon is shutting down"), 1),
        (NotFoundError("no sweep matches 'abc123'"), 2),
    ],
)
@pytest.mark.parametrize("grouped", [False, True])
def test_errors_map_to_one_line_and_exit_code(
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    code: int,
    grouped: bool,
) -> None:
    raised = ExceptionGroup("task group", [error]) if grouped else error
    monkeypatch.setattr(run_cmds, "_cmd_resume", _raising(raised))
    result = cli("resume", "abc123")
    assert (result.code, result.out, result.err) == (code, "", f"orchestrator: {error}\n")


@pytest.mark.parametrize(
    ("args", "entry"),
    [
        (["run", SPEC], "run_sweep"),
        (["resume", "last"], "resume_sweep"),
        (["rerun", "last", "--failed"], "resume_sweep"),
    ],
)
@pytest.mark.parametrize("log_json", [None, "-", "events.jsonl"])
def test_log_json_reaches_run_options(
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    entry: str,
    log_json: str | None,
) -> None:
    import orchestrator.runner

    seen: list[Any] = []

    def fake(*positional: Any, **keywords: Any) -> int:
        seen.append(positional[1] if entry == "resume_sweep" else positional[2])
        return 0

    monkeypatch.setattr(orchestrator.runner, entry, fake)
    extra = [] if log_json is None else ["--log-json", log_json]
    result = cli(*args, *extra, "--home", str(tmp_path))
    assert result.code == 0, result.err
    assert [options.log_json for options in seen] == [log_json]
