"""Options shared by several commands, and turning them into what the library takes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.cli.base import UsageError

if TYPE_CHECKING:
    from orchestrator.runner import RunOptions


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import version

        sys.stdout.write(f"{parser.prog} {version('orchestrator')}\n")
        parser.exit()


def version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_Version)


def home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="orchestrator home folder (default: $ORCHESTRATOR_HOME or ./.orchestrator)",
    )


def home(args: argparse.Namespace) -> Path:
    folder = getattr(args, "home", None) or os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator"
    return Path(folder).absolute()


def param_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "-P", "--param", action="append", default=[], metavar="NAME=VALUE", help=help
    )


def overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``-P NAME=VALUE`` pairs as a dict; a pair without ``=`` or a name is a SpecError."""
    from orchestrator.exceptions import SpecError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"expected NAME=VALUE, got {pair!r}", field="-P")
        out[name.strip()] = value
    return out


def load(args: argparse.Namespace) -> Any:
    """The spec named by exactly one of SPEC, ``-f SPEC`` and ``--url URL``."""
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
        raise UsageError("give exactly one of SPEC, -f SPEC or --url URL")
    if getattr(args, "url", None):
        return load_text(fetch_url(args.url, args.url, "--url"), args.url)
    return load_spec(given[0])


def parse_age(text: str) -> float:
    """``90``/``90s``, ``30m``, ``12h``, ``7d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"expected an age like 90s, 30m, 12h or 7d, got {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def age(text: str) -> float:
    try:
        seconds = parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive time, got {text!r}")
    return seconds


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on", "t", "y"}:
        return True
    if lowered in {"0", "false", "no", "off", "f", "n"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def output_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run``, ``resume`` and ``rerun`` share; :func:`run_options` reads them."""
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
        "--log-json",
        metavar="FILE",
        help="write every sweep event as one JSON record per line to FILE (`-`: stderr), "
        "for CI systems",
    )
    _plugin_options(parser)
    parser.add_argument(
        "--max-time",
        type=age,
        metavar="TIME",
        help="time budget of the whole sweep (90s, 30m, 2h): then it is stopped",
    )
    _cache_options(parser)
    resource_options(parser)
    executor_options(parser)


def executor_options(parser: argparse.ArgumentParser) -> None:
    """Where runs execute (``run``, ``resume``, ``rerun``, ``daemon``): :func:`dask_scheduler`
    reads them."""
    parser.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="run each run here (local, the default) or on a Dask cluster's workers (dask; "
        "needs the dask extra and --scheduler)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler, such as tcp://127.0.0.1:8786 (default: "
        "$DASK_SCHEDULER_ADDRESS; see `orchestrator dask-local`)",
    )


def dask_scheduler(args: argparse.Namespace) -> str | None:
    """The Dask scheduler's address with ``--executor dask``; None for local runs. Bad
    combinations are a UsageError."""
    given = getattr(args, "scheduler", None)
    if getattr(args, "executor", "local") != "dask":
        if given:
            raise UsageError("--scheduler goes with --executor dask")
        return None
    address = given or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        raise UsageError(
            "--executor dask needs --scheduler ADDRESS (or DASK_SCHEDULER_ADDRESS); "
            "`orchestrator dask-local N` starts a cluster on this machine"
        )
    if not re.fullmatch(r"(tcp|tls|ws|wss|ucx)://\S+", address):
        raise UsageError(
            f"--scheduler: expected tcp://HOST:PORT or tls://HOST:PORT, got {address!r}"
        )
    for name in ("gpus", "cpus", "memory"):
        if getattr(args, name, None) is not None:
            raise UsageError(
                f"--{name} applies to local runs; with --executor dask the workers advertise "
                "their resources (dask worker --resources)"
            )
    return address


def resource_options(parser: argparse.ArgumentParser) -> None:
    """What runs may be given (``run``, ``resume``, ``rerun``, ``daemon start``); the
    defaults come from the machine (:mod:`orchestrator.engine.inventory`)."""
    parser.add_argument(
        "--gpus",
        metavar="LIST",
        help="GPUs runs may be given: indexes such as 0,1,3, or none to leave devices alone "
        "(default: every GPU found; env ORCHESTRATOR_GPUS)",
    )
    parser.add_argument(
        "--cpus",
        metavar="N",
        help="CPU cores to hand out to runs that ask for cpu, such as 6 or 7500m "
        "(default: the cores this process may use)",
    )
    parser.add_argument(
        "--memory",
        metavar="SIZE",
        help="memory to hand out to runs that ask for it, such as 32Gi or 512M "
        "(default: the machine's)",
    )


def _plugin_options(parser: argparse.ArgumentParser) -> None:
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
        help="a plugin that fails stops the sweep, which then ends failed (exit 1; default: "
        "the plugin is switched off)",
    )


def _cache_options(parser: argparse.ArgumentParser) -> None:
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        type=boolean,
        metavar="BOOL",
        help="use the cache (true) or not (false), whatever the spec's cache section says",
    )
    cache.add_argument(
        "--nocache", action="store_const", const=False, dest="cache", help="same as --cache false"
    )


def run_options(args: argparse.Namespace, out: IO[str], err: IO[str]) -> RunOptions:
    from orchestrator.runner import RunOptions

    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be >= 1")
    if args.grace < 0:
        raise UsageError("--grace must be >= 0")
    tags = [t.strip() for t in (getattr(args, "tags", None) or "").split(",") if t.strip()]
    return RunOptions(
        home=home(args),
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
        log_json=args.log_json,
        gpus=args.gpus,
        cpus=args.cpus,
        memory=args.memory,
        scheduler=dask_scheduler(args),
    )
