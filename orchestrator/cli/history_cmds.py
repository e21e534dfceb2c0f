"""``ls``, ``show`` and ``diff``: the sweeps of the home folder, the runs of one, one run in
full, and what differs between two runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import IO

from orchestrator.cli.base import Commands, Parser, UsageError
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
        help="show the runs of a sweep, or one run in full",
        description="Show the newest run of every configuration of "
        "SWEEP (an id, a unique prefix, or 'last'); with SWEEP:INDEX (last:0) or --run RUN, "
        "one run in full: command, params, outputs, each metric's last/min/max, every state "
        "with its reason, what it was given, and where its logs and outputs are.",
    )
    show.__class__ = _ShowParser  # takes ``--sort -METRIC`` (argparse alone would not)
    show.add_argument("sweep", metavar="SWEEP", nargs="?")
    show.add_argument(
        "--run", metavar="RUN", help="one run in full (an id, a unique prefix, or SWEEP:INDEX)"
    )
    show.add_argument(
        "--sort",
        metavar="METRIC",
        help="sort by an output or metric; prefix with '-' for descending (--sort -accuracy)",
    )
    show.add_argument(
        "--all", action="store_true", help="include superseded attempts (with an attempt column)"
    )
    show.add_argument(
        "--limit", type=int, default=None, metavar="N", help="show N runs (a page; default: all)"
    )
    show.add_argument(
        "--offset", type=int, default=0, metavar="N", help="skip the first N runs (default 0)"
    )
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print one JSON object")
    form.add_argument("--csv", action="store_true", help="print CSV")
    home_option(show)
    show.set_defaults(handler=_cmd_show)

    diff = commands.add_parser(
        "diff",
        help="what differs between two runs",
        description="Print what differs between two runs (each an id, a unique prefix, or "
        "SWEEP:INDEX such as last:0): command line, params, outputs, last metric values, "
        "resources, place in a search.",
    )
    diff.add_argument("left", metavar="RUN")
    diff.add_argument("right", metavar="RUN")
    diff.add_argument("--json", action="store_true", help="print one JSON object")
    home_option(diff)
    diff.set_defaults(handler=_cmd_diff)


class _ShowParser(Parser):
    """``show``'s parser: argparse reads ``--sort -accuracy`` as ``--sort`` without its value
    followed by an unknown option ``-accuracy``; here a word after ``--sort`` that starts with
    a single ``-`` is its value, as in ``--sort=-accuracy``."""

    def parse_known_args(  # type: ignore[override]  # one signature for its overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        return super().parse_known_args(None if args is None else _sort_joined(args), namespace)


def _sort_joined(args: Sequence[str]) -> list[str]:
    """``["--sort", "-accuracy"]`` (``--sort`` or an abbreviation of it) as
    ``["--sort=-accuracy"]``; everything else as it is."""
    joined: list[str] = []
    words = iter(args)
    for word in words:
        if len(word) > 3 and "--sort".startswith(word):
            value = next(words, None)
            if value is not None and value.startswith("-") and not value.startswith("--"):
                joined.append(f"--sort={value}")
                continue
            joined += [word] if value is None else [word, value]
            continue
        joined.append(word)
    return joined


def _cmd_ls(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    return views.list_sweeps(home(args), out, err, as_json=args.json, limit=args.limit)


def _cmd_show(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    if (args.limit is not None and args.limit < 0) or args.offset < 0:
        raise UsageError("--limit and --offset must be >= 0")
    if (args.sweep is None) == (args.run is None):
        raise UsageError("show needs SWEEP, SWEEP:INDEX or --run RUN (one of them)")
    if args.run is not None or ":" in args.sweep:
        if args.csv:
            raise UsageError("one run has no --csv form; use --json")
        return views.show_run(home(args), args.run or args.sweep, out, as_json=args.json)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    return views.show_sweep(
        home(args),
        args.sweep,
        out,
        err,
        fmt=fmt,
        sort=args.sort,
        every_attempt=args.all,
        page=(args.limit, args.offset),
    )


def _cmd_diff(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    return views.diff_runs(home(args), args.left, args.right, out, as_json=args.json)
