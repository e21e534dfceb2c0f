"""``daemon``, ``submit`` and ``stop``: serve the engine, and talk to the one serving."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from orchestrator.cli.base import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Commands, UsageError
from orchestrator.cli.options import home, home_option, overrides, param_option, resource_options

if TYPE_CHECKING:
    import httpx


def add_parser(commands: Commands) -> None:
    _add_daemon(commands)
    _add_submit(commands)
    _add_stop(commands)


def _add_daemon(commands: Commands) -> None:
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
    resource_options(daemon)
    home_option(daemon)
    daemon.set_defaults(handler=_cmd_daemon)


def _add_submit(commands: Commands) -> None:
    submit = commands.add_parser(
        "submit",
        help="submit a sweep to the running daemon",
        description="Send SPEC to the daemon of the home folder; prints the sweep id.",
    )
    submit.add_argument("spec", metavar="SPEC", help="the polyaxonfile to run")
    param_option(submit, "override an input (repeatable)")
    submit.add_argument("--name", help="name of the sweep (default: the operation's name)")
    submit.add_argument(
        "--priority",
        type=int,
        default=0,
        help="freed run slots go to higher priorities first (default 0)",
    )
    submit.add_argument("--json", action="store_true", help="print the answer as JSON")
    home_option(submit)
    submit.set_defaults(handler=_cmd_submit)


def _add_stop(commands: Commands) -> None:
    stop = commands.add_parser(
        "stop",
        help="stop a sweep (or a run) the daemon is running",
        description="Stop SWEEP (an id, a unique prefix, or last), or with --run the run RUN "
        "(an id, a unique prefix, or SWEEP:INDEX such as last:0), through the daemon of the "
        "home folder. Its runs get SIGTERM, then SIGKILL after the daemon's --grace.",
    )
    stop.add_argument("target", metavar="SWEEP|RUN", help="what to stop: SWEEP, or RUN with --run")
    stop.add_argument("--run", action="store_true", help="the argument is a RUN, not a SWEEP")
    home_option(stop)
    stop.set_defaults(handler=_cmd_stop)


def _cmd_daemon(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.daemon.server import serve
    from orchestrator.runner import machine_pool

    if args.max_runs < 1:
        raise UsageError("--max-runs must be >= 1")
    return serve(
        machine_pool(args.gpus, args.cpus, args.memory, err),
        home(args),
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        max_runs=args.max_runs,
        grace=args.grace,
        err=err,
    )


def _daemon(args: argparse.Namespace, gone: str = "") -> httpx.Client:
    """A client of the home folder's daemon: NotFoundError when none was started (exit 2),
    UnavailableError when it is gone (exit 1; ``gone``: what that means for the command);
    either is one line saying how to start one."""
    from orchestrator.daemon.client import require_daemon

    return require_daemon(home(args), gone=gone)


#: What a gone daemon means for ``stop``: its runs' supervisor stopped them when it died.
_NOTHING_TO_STOP = (
    " and its runs with it: nothing is left to stop (a restarted daemon resumes its sweeps)"
)


def _cmd_submit(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import json

    from orchestrator.exceptions import SpecError
    from orchestrator.spec.load import read_spec_file
    from orchestrator.wording import plural, write_warnings

    path = Path(args.spec)
    data = read_spec_file(path, args.spec)  # bounded: no FIFO, no /dev/zero
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SpecError("expected UTF-8 text", file=args.spec) from None
    body = {
        "priority": args.priority,
        "spec": text,
        "params": overrides(args.param),
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
    write_warnings(err, answer.get("warnings", []))
    out.write(
        (
            json.dumps(answer)
            if args.json
            else f"submitted sweep {answer['sweep']} ({plural(answer['runs'], 'run')})"
        )
        + "\n"
    )
    return EXIT_OK


def _cmd_stop(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from urllib.parse import quote

    kind = "run" if args.run else "sweep"
    with _daemon(args, gone=_NOTHING_TO_STOP) as client:
        response = client.post(f"/api/v1/{kind}s/{quote(args.target, safe=':')}/stop")
    answer = response.json()
    if response.status_code != 202:
        err.write(f"orchestrator: {answer.get('error')}\n")
        return EXIT_USAGE
    out.write(f"stopping {kind} {answer.get(kind, args.target)}\n")
    return EXIT_OK
