"""``run``, ``resume`` and ``rerun``: run a sweep here, or hand a resume to the daemon."""

from __future__ import annotations

import argparse
from typing import IO

from orchestrator.cli.base import EXIT_OK, EXIT_USAGE, Commands, UsageError
from orchestrator.cli.options import (
    home,
    home_option,
    load,
    output_options,
    overrides,
    param_option,
    run_options,
)


def add_parser(commands: Commands) -> None:
    _add_run(commands)
    _add_resume(commands)
    _add_rerun(commands)


def _add_run(commands: Commands) -> None:
    run = commands.add_parser(
        "run",
        help="run a sweep (also: orchestrator SPEC)",
        description="Run every configuration of SPEC as a subprocess, at most --concurrency at "
        "a time, journaling everything under the home folder. Ctrl-C, SIGTERM, SIGHUP (the "
        "terminal closed) or a closed output pipe stop the sweep: running runs get SIGTERM, "
        "then SIGKILL after --grace (a second Ctrl-C kills at once). Commands run with this "
        "interpreter's folder first on PATH, so `python` is the orchestrator's own.",
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
    param_option(
        run, "override an input (repeatable); where the matrix sets it too, the matrix wins"
    )
    run.add_argument("--name", help="name of the sweep (default: the operation's name)")
    run.add_argument("--description", help="description of the sweep")
    run.add_argument("--tags", help="comma-separated tags")
    output_options(run)
    run.add_argument(
        "--eager",
        action="store_true",
        help="accepted for Polyaxon compatibility; everything runs locally anyway",
    )
    home_option(run)
    run.set_defaults(handler=_cmd_run)


def _add_resume(commands: Commands) -> None:
    resume = commands.add_parser(
        "resume",
        help="continue a sweep: run every configuration that has not succeeded",
        description="Run exactly the configurations of SWEEP that have not succeeded (matched "
        "by their params, not their position): failed, stopped, never started, and any added "
        "to the spec since. SWEEP is an id, a unique prefix, or 'last'.",
    )
    resume.add_argument("sweep", metavar="SWEEP")
    param_option(resume, "override an input (added to the sweep's own -P values)")
    resume.add_argument(
        "--force", action="store_true", help="resume even though the component changed"
    )
    output_options(resume)
    home_option(resume)
    resume.set_defaults(handler=_cmd_resume)


def _add_rerun(commands: Commands) -> None:
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
    output_options(rerun)
    home_option(rerun)
    rerun.set_defaults(handler=_cmd_rerun)


def _cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if getattr(args, "executor", "local") == "local":
        from orchestrator.executors.supervised import warm_up

        warm_up()  # before the imports below: its start-up overlaps ours
    from orchestrator.runner import run_sweep

    options = run_options(args, out, err)
    loaded = load(args)
    return run_sweep(loaded, overrides(args.param), options, resume_latest=args.resume)


def _through_daemon(
    args: argparse.Namespace, out: IO[str], err: IO[str], only: list[str] | None
) -> int | None:
    """Hand the sweep to the daemon of the home folder, if one runs; else None."""
    from urllib.parse import quote

    from orchestrator.daemon.client import daemon_client

    client = daemon_client(home(args))
    if client is None:
        return None
    body = {"force": args.force, "only": only}
    with client:
        response = client.post(f"/api/v1/sweeps/{quote(args.sweep, safe='')}/resume", json=body)
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
    options = run_options(args, out, err)
    return resume_sweep(args.sweep, options, overrides=overrides(args.param), force=args.force)


def _cmd_rerun(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.runner import resume_sweep

    states = {s for s, wanted in (("failed", args.failed), ("stopped", args.stopped)) if wanted}
    if not states:
        raise UsageError("rerun needs --failed, --stopped or both")
    handed = _through_daemon(args, out, err, sorted(states))
    if handed is not None:
        return handed
    options = run_options(args, out, err)
    return resume_sweep(args.sweep, options, overrides={}, force=args.force, only_states=states)
