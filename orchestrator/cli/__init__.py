"""The command line: parse arguments, call the library, print results. Nothing else.

Exit codes: 0 success, 1 a sweep failed or was stopped (or cannot be started yet), 2 a bad
spec or bad usage. Expected errors print one line on stderr, never a traceback. Each module
here registers a group of subcommands; heavy modules are imported inside the commands so
that ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Collection, Sequence
from typing import IO

from orchestrator.cli import (
    admin_cmds,
    daemon_cmds,
    history_cmds,
    logs_cmd,
    plan_cmd,
    report_cmd,
    run_cmds,
)
from orchestrator.cli.base import EXIT_FAILED, EXIT_USAGE, Commands, Handler, Parser, UsageError
from orchestrator.cli.options import home_option, version_option

__all__ = ["main", "program"]

#: In the order ``--help`` lists their subcommands.
_GROUPS = (plan_cmd, run_cmds, history_cmds, report_cmd, daemon_cmds, admin_cmds, logs_cmd)


def _build() -> tuple[Parser, Commands]:
    parser = Parser(
        prog="orchestrator",
        description="Run Polyaxon polyaxonfile (v1.1) sweeps on this machine.",
        epilog="Exit codes: 0 success, 1 sweep failed or stopped, 2 bad spec or usage.",
    )
    version_option(parser)
    home_option(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in _GROUPS:
        group.add_parser(commands)
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _with_default_command(argv: list[str], commands: Collection[str]) -> list[str]:
    """``orchestrator SPEC ...`` means ``orchestrator run SPEC ...``; a bare word close to a
    command's name that names no file is a mistyped command (UsageError)."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--home":
            i += 2
            continue
        if token.startswith("-"):
            return argv
        if token in commands:
            return argv
        _refuse_typo(token, commands)
        return [*argv[:i], "run", *argv[i:]]
    return argv


def _refuse_typo(token: str, commands: Collection[str]) -> None:
    """``rnu spec.yaml``: an unknown command, not a spec named ``rnu``. A token that names a
    file, or looks like a path or URL, stays a spec."""
    if any(c in token for c in "/.:") or os.path.exists(token):
        return
    import difflib

    close = difflib.get_close_matches(token, commands, n=1)
    if close:
        raise UsageError(f"unknown command {token!r}; did you mean {close[0]!r}?")


def _first_expected(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error we raise on purpose inside ``group``, or the group itself."""
    from orchestrator.exceptions import OrchestratorError

    matched, _ = group.split((OrchestratorError, KeyboardInterrupt))
    if matched is None:
        return group
    first: BaseException = matched
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def program() -> int:
    """The ``orchestrator`` command and ``python -m orchestrator``: :func:`main` in a process of
    its own, whose heap it may settle once a sweep or the daemon is set up
    (:mod:`orchestrator.heap`); :func:`main` called from other code leaves its host's alone."""
    from orchestrator.heap import own_the_process

    own_the_process()
    return main()


def main(
    argv: Sequence[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser, commands = _build()
    try:
        argv = _with_default_command(list(sys.argv[1:] if argv is None else argv), commands.choices)
    except UsageError as exc:
        err.write(f"orchestrator: error: {exc}\n")
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    handler: Handler = args.handler
    return _call(handler, args, out, err)


def _call(handler: Handler, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Run the command; an error raised on purpose becomes one line on stderr and its code."""
    from orchestrator.exceptions import (
        NotFoundError,
        OrchestratorError,
        SpecError,
        StoreError,
        SweepBusyError,
        UnavailableError,
    )

    try:
        try:
            return handler(args, out, err)
        except BaseExceptionGroup as group:  # errors raised inside the engine's task groups
            raise _first_expected(group) from None
    except UsageError as exc:
        err.write(f"orchestrator: error: {exc}\n")
        return EXIT_USAGE
    except SpecError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except (NotFoundError, StoreError) as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_USAGE
    except (SweepBusyError, UnavailableError) as exc:  # not bad input: may succeed later
        err.write(f"orchestrator: {exc}\n")
        return EXIT_FAILED
    except OrchestratorError as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("orchestrator: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``orchestrator show ... | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, out.fileno())
        return 141
