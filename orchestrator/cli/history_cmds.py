"""``ls`` and ``show``: the sweeps of the home folder and the runs of one."""

from __future__ import annotations

import argparse
from typing import IO

from orchestrator.cli.base import Commands
from orchestrator.cli.options import home, home_option


def add_parser(commands: Commands) -> None:
    ls = commands.add_parser(
        "ls", help="list sweeps", description="List the sweeps of the home folder, newest first."
    )
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="newest N (default 50)")
    home_option(ls)
    ls.set_defaults(handler=_cmd_ls)

    show = commands.add_parser(
        "show",
        help="show the runs of a sweep",
        description="Show the newest run of every configuration of "
        "SWEEP (an id, a unique prefix, or 'last').",
    )
    show.add_argument("sweep", metavar="SWEEP")
    show.add_argument(
        "--sort",
        metavar="METRIC",
        help="sort by an output or metric; prefix with '-' for descending",
    )
    show.add_argument("--all", action="store_true", help="include superseded attempts")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print one JSON object")
    form.add_argument("--csv", action="store_true", help="print CSV")
    home_option(show)
    show.set_defaults(handler=_cmd_show)


def _cmd_ls(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    return views.list_sweeps(home(args), out, err, as_json=args.json, limit=args.limit)


def _cmd_show(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    fmt = "json" if args.json else "csv" if args.csv else "table"
    return views.show_sweep(
        home(args), args.sweep, out, err, fmt=fmt, sort=args.sort, every_attempt=args.all
    )
