"""The command line: parse arguments, call the library, print results. Nothing else.

Exit codes: 0 success, 1 a sweep failed or was stopped, 2 a bad spec or bad usage. Expected
errors print one line on stderr, never a traceback. Heavy modules are imported inside the
commands so that ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line, as every other usage error does."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="orchestrator home folder (default: $ORCHESTRATOR_HOME or ./.orchestrator)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orchestrator",
        description="Run Polyaxon polyaxonfile (v1.1) sweeps on this machine.",
        epilog="Exit codes: 0 success, 1 sweep failed or stopped, 2 bad spec or usage.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    _home_option(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    plan = commands.add_parser(
        "plan",
        help="validate a polyaxonfile and show the runs it expands to",
        description="Validate SPEC and list its runs: params and command line. Nothing runs.",
    )
    plan.add_argument("spec", metavar="SPEC", help="polyaxonfile (operation or component)")
    plan.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an input (repeatable); the value is coerced to its type",
    )
    plan.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"runs": [{"index", "params", "argv"}]}',
    )
    plan.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="show only the first N runs (expansion is lazy)",
    )
    _home_option(plan)

    run = commands.add_parser(
        "run",
        help="run a sweep (also: orchestrator SPEC)",
        description="Run every configuration of SPEC as a subprocess, at most --concurrency at "
        "a time, journaling everything under the home folder. Ctrl-C stops the sweep (a "
        "second Ctrl-C kills at once).",
    )
    run.add_argument("spec", metavar="SPEC", nargs="?", help="polyaxonfile to run")
    run.add_argument(
        "-f",
        "--polyaxonfile",
        dest="file",
        metavar="SPEC",
        help="polyaxonfile to run (same as SPEC)",
    )
    run.add_argument("--url", help="fetch the polyaxonfile from this http(s) URL")
    run.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an input (repeatable)",
    )
    run.add_argument("--name", help="name of the sweep (default: the operation's name)")
    run.add_argument("--description", help="description of the sweep")
    run.add_argument("--tags", help="comma-separated tags")
    run.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="most runs alive at once (default: matrix.concurrency, else the number of CPUs)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after SIGTERM, seconds before SIGKILL when stopping (default: 10)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object at the end: {"sweep", "state", "runs": [...]}',
    )
    run.add_argument(
        "--eager",
        action="store_true",
        help="accepted for Polyaxon compatibility; everything runs locally anyway",
    )
    _home_option(run)
    return parser


def _home(args: argparse.Namespace) -> Path:
    home = getattr(args, "home", None) or os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator"
    return Path(home).absolute()


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    from orchestrator.exceptions import SpecError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"expected NAME=VALUE, got {pair!r}", field="-P")
        out[name.strip()] = value
    return out


def _load(args: argparse.Namespace) -> Any:
    from orchestrator.spec import load_spec, load_text
    from orchestrator.spec.load import fetch_url

    given = [
        v
        for v in (
            getattr(args, "spec", None),
            getattr(args, "file", None),
            getattr(args, "url", None),
        )
        if v
    ]
    if len(given) != 1:
        raise _usage("give exactly one of SPEC, -f SPEC or --url URL")
    if getattr(args, "url", None):
        return load_text(fetch_url(args.url, args.url, "--url"), args.url)
    return load_spec(given[0])


def _cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.runner import run_sweep

    if args.concurrency is not None and args.concurrency < 1:
        raise _usage("--concurrency must be >= 1")
    if args.grace < 0:
        raise _usage("--grace must be >= 0")
    loaded = _load(args)
    tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
    return run_sweep(
        loaded,
        _overrides(args.param),
        home=_home(args),
        out=out,
        err=err,
        concurrency=args.concurrency,
        grace=args.grace,
        as_json=args.json,
        name=args.name,
        description=args.description,
        tags=tags,
    )


def _cmd_plan(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import itertools

    import msgspec

    from orchestrator.spec import compile_plan

    if args.limit is not None and args.limit < 0:
        raise _usage("--limit must be >= 0")
    loaded = _load(args)
    plan = compile_plan(loaded, _overrides(args.param), home=_home(args))
    runs = plan.runs()
    if args.limit is not None:
        runs = itertools.islice(runs, args.limit)
    if args.json:
        encoded = [
            msgspec.json.encode({"index": r.index, "params": r.params, "argv": r.argv})
            for r in runs
        ]
        out.write('{"runs": [' + ", ".join(e.decode() for e in encoded) + "]}\n")
        return EXIT_OK
    for note in loaded.ignored:
        err.write(f"note: {note}: no local meaning, ignored\n")
    kind = plan.expansion.kind if plan.expansion is not None else "single run"
    extra = f", concurrency {plan.concurrency}" if plan.concurrency else ""
    out.write(f"{args.spec}: {len(plan)} run{'s' if len(plan) != 1 else ''} ({kind}{extra})\n")
    for run in runs:
        shown = " ".join(f"{k}={_show(v)}" for k, v in run.params.items())
        out.write(f"\n[{run.index}] {shown}\n    $ {shlex.join(run.argv)}\n")
    return EXIT_OK


def _show(value: Any) -> str:
    import msgspec

    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


_COMMANDS = {"plan", "run"}


def _with_default_command(argv: list[str]) -> list[str]:
    """``orchestrator SPEC ...`` means ``orchestrator run SPEC ...``."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--home":
            i += 2
            continue
        if token.startswith("-"):
            return argv
        if token in _COMMANDS:
            return argv
        return [*argv[:i], "run", *argv[i:]]
    return argv


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def main(
    argv: Sequence[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    argv = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    from orchestrator.exceptions import OrchestratorError, SpecError

    command = {"plan": _cmd_plan, "run": _cmd_run}[args.command]
    try:
        return command(args, out, err)
    except _UsageError as exc:
        err.write(f"orchestrator: error: {exc}\n")
        return EXIT_USAGE
    except SpecError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except OrchestratorError as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("orchestrator: interrupted\n")
        return 130
