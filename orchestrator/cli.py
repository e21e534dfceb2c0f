"""The command line: parse arguments, call the library, print results. Nothing else.

Exit codes: 0 success, 1 a sweep failed or was stopped, 2 a bad spec or bad usage. Expected
errors print one line on stderr, never a traceback. Heavy modules are imported inside the
commands so that ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
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
        "--resume",
        action="store_true",
        help="continue the newest sweep of this spec instead of starting anew",
    )
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
    _output_options(run)
    run.add_argument(
        "--eager",
        action="store_true",
        help="accepted for Polyaxon compatibility; everything runs locally anyway",
    )
    _home_option(run)

    resume = commands.add_parser(
        "resume",
        help="continue a sweep: run every configuration that has not succeeded",
        description="Run exactly the configurations of SWEEP that have not succeeded (matched "
        "by their params, not their position): failed, stopped, never started, and any added "
        "to the spec since. SWEEP is an id, a unique prefix, or 'last'.",
    )
    resume.add_argument("sweep", metavar="SWEEP")
    resume.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an input (added to the sweep's own -P values)",
    )
    resume.add_argument(
        "--force", action="store_true", help="resume even though the component changed"
    )
    _output_options(resume)
    _home_option(resume)

    rerun = commands.add_parser(
        "rerun",
        help="run a sweep's failed and/or stopped configurations again",
        description="Run again just the configurations of SWEEP whose newest run failed "
        "(--failed) or was stopped (--stopped).",
    )
    rerun.add_argument("sweep", metavar="SWEEP")
    rerun.add_argument("--failed", action="store_true", help="re-run failed configurations")
    rerun.add_argument("--stopped", action="store_true", help="re-run stopped configurations")
    rerun.add_argument(
        "--force", action="store_true", help="re-run even though the component changed"
    )
    _output_options(rerun)
    _home_option(rerun)

    ls = commands.add_parser(
        "ls", help="list sweeps", description="List the sweeps of the home folder, newest first."
    )
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="newest N (default 50)")
    _home_option(ls)

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
    _home_option(show)

    daemon = commands.add_parser(
        "daemon",
        help="serve the engine over HTTP (a Unix socket in the home folder; TCP optional)",
        description="Run the orchestrator as a long-lived service: sweeps are submitted over "
        "its HTTP API (docs/api.md) and share --max-runs. SIGTERM lets runs finish for --grace "
        "seconds, then stops them.",
    )
    daemon.add_argument("--host", help="also listen on TCP at this address (token required)")
    daemon.add_argument("--port", type=int, help="TCP port (0: any free port)")
    daemon.add_argument(
        "--allow-remote", action="store_true", help="allow --host other than loopback"
    )
    daemon.add_argument(
        "--max-runs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="most runs alive at once across all sweeps (default: CPUs)",
    )
    daemon.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long runs may finish before they are stopped",
    )
    _home_option(daemon)

    submit = commands.add_parser(
        "submit",
        help="submit a sweep to the running daemon",
        description="Send SPEC to the daemon of the home folder; prints the sweep id.",
    )
    submit.add_argument("spec", metavar="SPEC")
    submit.add_argument("-P", "--param", action="append", default=[], metavar="NAME=VALUE")
    submit.add_argument("--name")
    submit.add_argument(
        "--priority",
        type=int,
        default=0,
        help="freed run slots go to higher priorities first (default 0)",
    )
    submit.add_argument("--json", action="store_true", help="print the answer as JSON")
    _home_option(submit)

    stop = commands.add_parser(
        "stop",
        help="stop a sweep (or a run) the daemon is running",
        description="Stop a sweep, or with --run a single run, through "
        "the daemon of the home folder.",
    )
    stop.add_argument("target", metavar="SWEEP_OR_RUN")
    stop.add_argument("--run", action="store_true", help="TARGET is a run id")
    _home_option(stop)

    plugins = commands.add_parser(
        "plugins",
        help="list the plugins that would be loaded",
        description="List installed plugins (entry-point group orchestrator.plugins): where "
        "each comes from and which hooks it implements.",
    )
    plugins.add_argument("--plugin", action="append", metavar="NAME", help="only these")
    plugins.add_argument(
        "--no-plugin", action="append", default=[], metavar="NAME", help="not this one"
    )
    plugins.add_argument("--json", action="store_true", help="print a JSON list")
    _home_option(plugins)

    cache_cmd = commands.add_parser(
        "cache", help="list or clear cached runs", description="The run cache of the home folder."
    )
    cache_cmd.add_argument("action", choices=["ls", "clear"])
    cache_cmd.add_argument(
        "--older-than",
        metavar="AGE",
        help="with clear: only entries older than AGE (90s, 30m, 12h, 7d)",
    )
    cache_cmd.add_argument("--json", action="store_true", help="with ls: print a JSON list")
    _home_option(cache_cmd)

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
        help="keep printing new output until the run finishes",
    )
    logs.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    _home_option(logs)
    return parser


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="most runs alive at once (default: matrix.concurrency, else the number of CPUs)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after SIGTERM, seconds before SIGKILL when stopping (default: 10)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object at the end: {"sweep", "state", "runs"}',
    )
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="NAME",
        help="load only these plugins (repeatable; see `plugins`)",
    )
    parser.add_argument(
        "--no-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="do not load this plugin (repeatable)",
    )
    parser.add_argument(
        "--strict-plugins",
        action="store_true",
        help="a plugin that fails stops the sweep (default: it is switched off)",
    )
    parser.add_argument(
        "--max-time",
        type=_age,
        metavar="TIME",
        help="time budget of the whole sweep (90s, 30m, 2h): then it is stopped",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        type=_bool,
        metavar="BOOL",
        help="use the cache (true) or not (false), whatever the spec's cache section says",
    )
    cache.add_argument(
        "--nocache", action="store_const", const=False, dest="cache", help="same as --cache false"
    )


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


def _age(text: str) -> float:
    from orchestrator.cache_admin import parse_age

    try:
        seconds = parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive time, got {text!r}")
    return seconds


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on", "t", "y"}:
        return True
    if lowered in {"0", "false", "no", "off", "f", "n"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _run_options(args: argparse.Namespace, out: IO[str], err: IO[str]) -> Any:
    from orchestrator.runner import RunOptions

    if args.concurrency is not None and args.concurrency < 1:
        raise _usage("--concurrency must be >= 1")
    if args.grace < 0:
        raise _usage("--grace must be >= 0")
    tags = [t.strip() for t in (getattr(args, "tags", None) or "").split(",") if t.strip()]
    return RunOptions(
        home=_home(args),
        out=out,
        err=err,
        concurrency=args.concurrency,
        grace=args.grace,
        as_json=args.json,
        name=getattr(args, "name", None),
        description=getattr(args, "description", None),
        tags=tags,
        allow_plugins=args.plugin,
        deny_plugins=args.no_plugin,
        strict_plugins=args.strict_plugins,
        cache=args.cache,
        max_time=args.max_time,
    )


def _cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.runner import run_sweep

    options = _run_options(args, out, err)
    loaded = _load(args)
    return run_sweep(loaded, _overrides(args.param), options, resume_latest=args.resume)


def _through_daemon(
    args: argparse.Namespace, out: IO[str], err: IO[str], only: list[str] | None
) -> int | None:
    """``resume``/``rerun`` hand the sweep to the daemon of the home folder, if one runs."""
    from orchestrator.daemon.client import daemon_info, unix_client

    info = daemon_info(_home(args))
    if info is None:
        return None
    body = {"force": args.force, "only": only}
    with unix_client(info) as client:
        response = client.post(f"/api/v1/sweeps/{args.sweep}/resume", json=body)
    answer = response.json()
    if response.status_code != 202:
        err.write(f"orchestrator: {answer.get('error')}\n")
        return EXIT_USAGE
    out.write(
        f"the daemon resumes sweep {answer['sweep']} (follow it with `orchestrator "
        f"logs` or `show`)\n"
    )
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.runner import resume_sweep

    if not args.param:
        handed = _through_daemon(args, out, err, None)
        if handed is not None:
            return handed
    options = _run_options(args, out, err)
    return resume_sweep(args.sweep, options, overrides=_overrides(args.param), force=args.force)


def _cmd_rerun(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.runner import resume_sweep

    states = {s for s, wanted in (("failed", args.failed), ("stopped", args.stopped)) if wanted}
    if not states:
        raise _usage("rerun needs --failed, --stopped or both")
    handed = _through_daemon(args, out, err, sorted(states))
    if handed is not None:
        return handed
    options = _run_options(args, out, err)
    return resume_sweep(args.sweep, options, overrides={}, force=args.force, only_states=states)


def _cmd_ls(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    return views.list_sweeps(_home(args), out, err, as_json=args.json, limit=args.limit)


def _cmd_show(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    fmt = "json" if args.json else "csv" if args.csv else "table"
    return views.show_sweep(
        _home(args), args.sweep, out, err, fmt=fmt, sort=args.sort, every_attempt=args.all
    )


def _cmd_plugins(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import json

    from orchestrator.plugin_host import PluginHost

    host = PluginHost.installed(err, allow=args.plugin, deny=args.no_plugin)
    items = [{"name": p.name, "source": p.source, "hooks": p.hooks} for p in host.loaded.values()]
    if args.json:
        out.write(json.dumps(items) + "\n")
    elif not items:
        out.write("no plugins loaded\n")
    for item in [] if args.json else items:
        out.write(f"{item['name']}  {item['source']}\n    hooks: {', '.join(item['hooks'])}\n")
    return EXIT_OK


def _cmd_daemon(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.daemon.server import serve

    if args.max_runs < 1:
        raise _usage("--max-runs must be >= 1")
    return serve(
        _home(args),
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        max_runs=args.max_runs,
        grace=args.grace,
        err=err,
    )


def _daemon(args: argparse.Namespace) -> Any:
    from orchestrator.daemon.client import daemon_info, unix_client
    from orchestrator.exceptions import NotFoundError

    info = daemon_info(_home(args))
    if info is None:
        raise NotFoundError(
            f"no daemon is running for {_home(args)} (start one with `orchestrator daemon`)"
        )
    return unix_client(info)


def _cmd_submit(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import json

    from orchestrator.exceptions import SpecError

    path = Path(args.spec)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=args.spec) from None
    body = {
        "priority": args.priority,
        "spec": text,
        "params": _overrides(args.param),
        "name": args.name,
        "base_dir": str(path.resolve().parent),
        "spec_path": str(path.resolve()),
    }
    with _daemon(args) as client:
        response = client.post("/api/v1/sweeps", json=body)
    answer = response.json()
    if response.status_code == 400:
        raise SpecError(answer["error"].removeprefix(f"{path.resolve()}: "), file=args.spec)
    if response.status_code != 201:
        err.write(
            f"orchestrator: the daemon answered {response.status_code}: {answer.get('error')}\n"
        )
        return EXIT_FAILED
    out.write(
        (
            json.dumps(answer)
            if args.json
            else f"submitted sweep {answer['sweep']} ({answer['runs']} runs)"
        )
        + "\n"
    )
    return EXIT_OK


def _cmd_stop(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    kind = "runs" if args.run else "sweeps"
    with _daemon(args) as client:
        response = client.post(f"/api/v1/{kind}/{args.target}/stop")
    if response.status_code != 202:
        err.write(f"orchestrator: {response.json().get('error')}\n")
        return EXIT_USAGE
    out.write(f"stopping {kind[:-1]} {args.target}\n")
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import cache_admin

    try:
        older = cache_admin.parse_age(args.older_than) if args.older_than else None
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if args.action == "ls":
        return cache_admin.list_entries(_home(args), out, as_json=args.json)
    return cache_admin.clear_entries(_home(args), out, older_than=older)


def _cmd_logs(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    if args.tail is not None and args.tail < 0:
        raise _usage("--tail must be >= 0")
    return views.print_logs(
        _home(args),
        args.run,
        out,
        err,
        follow=args.follow,
        stream="stderr" if args.stderr else "stdout",
        tail=args.tail,
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


_COMMANDS = {
    "plan",
    "run",
    "resume",
    "rerun",
    "ls",
    "show",
    "logs",
    "plugins",
    "cache",
    "daemon",
    "submit",
    "stop",
}


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
    from orchestrator.exceptions import NotFoundError, OrchestratorError, SpecError, StoreError

    command = {
        "plan": _cmd_plan,
        "run": _cmd_run,
        "resume": _cmd_resume,
        "rerun": _cmd_rerun,
        "ls": _cmd_ls,
        "show": _cmd_show,
        "logs": _cmd_logs,
        "plugins": _cmd_plugins,
        "cache": _cmd_cache,
        "daemon": _cmd_daemon,
        "submit": _cmd_submit,
        "stop": _cmd_stop,
    }[args.command]
    try:
        try:
            return command(args, out, err)
        except BaseExceptionGroup as group:  # errors raised inside the engine's task groups
            raise _first_expected(group) from None
    except _UsageError as exc:
        err.write(f"orchestrator: error: {exc}\n")
        return EXIT_USAGE
    except SpecError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except (NotFoundError, StoreError) as exc:
        err.write(f"orchestrator: {exc}\n")
        return EXIT_USAGE
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
