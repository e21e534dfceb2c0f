"""``daemon``, ``submit``, ``stop`` and ``web``: serve the engine, and talk to the one
serving."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from orchestrator.cli.base import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Commands, UsageError
from orchestrator.cli.options import (
    dask_scheduler,
    executor_options,
    home,
    home_option,
    overrides,
    param_option,
    resource_options,
)

if TYPE_CHECKING:
    import httpx


def add_parser(commands: Commands) -> None:
    _add_daemon(commands)
    _add_submit(commands)
    _add_stop(commands)
    _add_web(commands)
    _add_dask_local(commands)


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
    executor_options(daemon)
    home_option(daemon)
    daemon.set_defaults(handler=_cmd_daemon)


def _add_dask_local(commands: Commands) -> None:
    local = commands.add_parser(
        "dask-local",
        help="start a Dask cluster on this machine for --executor dask",
        description="Start a Dask LocalCluster of N worker processes bound to loopback, print "
        "its scheduler address (the first line), and serve until Ctrl-C or SIGTERM. Needs the "
        "dask extra.",
    )
    local.add_argument("workers", metavar="N", type=int, help="worker processes")
    local.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="threads per worker: the most runs one worker holds at once (default 1)",
    )
    local.add_argument(
        "--port", type=int, default=0, help="the scheduler's port (default 0: any free port)"
    )
    local.add_argument(
        "--resources",
        metavar="NAME=AMOUNT,...",
        help="what each worker advertises, such as GPU=1 or GPU=1,MEM=16e9 (runs asking "
        "nvidia.com/gpu, cpu or memory take GPU, CPU or MEM)",
    )
    local.add_argument(
        "--dashboard", action="store_true", help="serve the dashboard on 127.0.0.1:8787"
    )
    local.set_defaults(handler=_cmd_dask_local)


def _resources(text: str | None) -> dict[str, float] | None:
    """``GPU=1,MEM=16e9`` as Dask worker resources."""
    if not text:
        return None
    out: dict[str, float] = {}
    for pair in text.split(","):
        name, sep, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--resources: expected NAME=AMOUNT[,...], got {text!r}")
    return out


def _cmd_dask_local(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import importlib.util

    from orchestrator.executors.dask_local import serve_local_cluster

    if args.workers < 1 or args.threads < 1:
        raise UsageError("dask-local needs N >= 1 workers and --threads >= 1")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0 to 65535")
    resources = _resources(args.resources)
    if importlib.util.find_spec("distributed") is None:
        err.write("orchestrator: dask-local needs distributed: pip install 'orchestrator[dask]'\n")
        return EXIT_FAILED
    return serve_local_cluster(
        args.workers,
        threads=args.threads,
        port=args.port,
        resources=resources,
        dashboard=args.dashboard,
        out=out,
    )


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


def _add_web(commands: Commands) -> None:
    web = commands.add_parser(
        "web",
        help="print a one-time sign-in link to the daemon's web page",
        description="Ask the daemon of the home folder for a new sign-in link to its web page "
        "(the daemon must listen on TCP: start it with --port). Each link works once, for 10 "
        "minutes, and signs the browser in until the daemon stops.",
    )
    web.add_argument("--open", action="store_true", help="open the link in a browser too")
    home_option(web)
    web.set_defaults(handler=_cmd_web)


def _cmd_web(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    with _daemon(args) as client:
        response = client.post("/api/v1/web-login")
    answer = response.json()
    if response.status_code != 201:
        err.write(f"orchestrator: {answer.get('error')}\n")
        return EXIT_FAILED
    out.write(f"{answer['url']}\n")
    out.flush()
    if args.open:
        import webbrowser

        if not webbrowser.open(answer["url"]):
            err.write("orchestrator: no browser could be opened here: open the link yourself\n")
    return EXIT_OK


def _cmd_daemon(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.daemon.server import serve
    from orchestrator.runner import machine_pool

    if args.max_runs < 1:
        raise UsageError("--max-runs must be >= 1")
    scheduler, cluster = dask_scheduler(args), None
    if scheduler is not None:
        from orchestrator.executors.dask_executor import DaskCluster

        cluster = DaskCluster(scheduler, grace=args.grace)
        cluster.check()
    return serve(
        machine_pool(args.gpus, args.cpus, args.memory, err),
        home(args),
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        max_runs=args.max_runs,
        grace=args.grace,
        err=err,
        cluster=cluster,
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
    from orchestrator.wording import write_warnings

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
    out.write((json.dumps(answer) if args.json else f"submitted {_what(answer)}") + "\n")
    return EXIT_OK


def _what(answer: dict[str, object]) -> str:
    """What ``submit`` says it handed over: a sweep's id and run count (a pipeline's, nodes)."""
    from orchestrator.wording import plural

    runs = answer["runs"]
    assert isinstance(runs, int)
    if answer.get("kind") == "dag":
        return f"pipeline {answer['sweep']} ({plural(runs, 'node')})"
    return f"sweep {answer['sweep']} ({plural(runs, 'run')})"


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
