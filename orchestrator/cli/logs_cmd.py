"""``logs``: print (or follow) a run's stdout or stderr."""

from __future__ import annotations

import argparse
from typing import IO

from orchestrator.cli.base import Commands, UsageError
from orchestrator.cli.options import home, home_option


def add_parser(commands: Commands) -> None:
    logs = commands.add_parser(
        "logs",
        help="print (or follow) a run's output",
        description="Print the stdout (or stderr) of RUN: a run id, a "
        "unique prefix, or SWEEP:INDEX (for example last:0).",
    )
    logs.add_argument("run", metavar="RUN")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new output until the run finishes (SWEEP:INDEX of a run not "
        "started yet: wait for it to start)",
    )
    logs.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    home_option(logs)
    logs.set_defaults(handler=_cmd_logs)


def _cmd_logs(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail must be >= 0")
    return views.print_logs(
        home(args),
        args.run,
        out,
        err,
        follow=args.follow,
        stream="stderr" if args.stderr else "stdout",
        tail=args.tail,
    )
