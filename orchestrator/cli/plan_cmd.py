"""``plan``: validate a polyaxonfile and show the runs it expands to, running nothing."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.cli.base import EXIT_OK, Commands, UsageError
from orchestrator.cli.options import home, home_option, load, overrides, param_option

if TYPE_CHECKING:
    from orchestrator.spec.resolve import Plan, RunSpec


def add_parser(commands: Commands) -> None:
    plan = commands.add_parser(
        "plan",
        help="validate a polyaxonfile and show the runs it expands to",
        description=(
            "Validate SPEC and list its runs: params and command line. Nothing runs. An "
            "adaptive search (hyperband, bayes, hyperopt, tpe, iterative) decides its runs from "
            "results: plan says how many it makes and shows one example run. A DAG (run.kind: "
            "dag): its operations in order, what each waits for, and each one's runs."
        ),
    )
    plan.add_argument("spec", metavar="SPEC", help="polyaxonfile (operation or component)")
    param_option(plan, "override an input (repeatable); the value is coerced to its type")
    plan.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"runs": [{"index", "params", "argv"}]} (an adaptive '
        'search: {"search": {"kind", "total", "seed"}, "example": {"params", "argv"}}; a DAG: '
        '{"kind": "dag", "nodes": [{"name", "upstream", "trigger", "runs", ...}]})',
    )
    plan.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="show only the first N runs (of each operation of a DAG; expansion is lazy)",
    )
    home_option(plan)
    plan.set_defaults(handler=_cmd_plan)


def _cmd_plan(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import itertools

    from orchestrator.spec import compile_dag, compile_plan, is_dag
    from orchestrator.store.layout import run_paths
    from orchestrator.wording import plural, write_warnings

    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be >= 0")
    loaded = load(args)
    if is_dag(loaded):
        from orchestrator.cli.plan_dag import plan_dag

        paths = run_paths(home(args))
        dag = compile_dag(loaded, overrides(args.param), paths=paths)
        write_warnings(err, dag.warnings)
        plan_dag(args, dag, paths, out, err)
        return EXIT_OK
    plan = compile_plan(loaded, overrides(args.param), paths=run_paths(home(args)))
    write_warnings(err, plan.warnings)
    if plan.expansion is not None and plan.expansion.adaptive:
        return _plan_search(args, plan, out)
    runs = plan.runs()
    if args.limit is not None:
        runs = itertools.islice(runs, args.limit)
    if args.json:
        _write_json(runs, out)
        return EXIT_OK
    for note in loaded.ignored:
        err.write(f"note: {note}: no local meaning, ignored\n")
    kind = plan.expansion.kind if plan.expansion is not None else "single run"
    extra = f", concurrency {plan.concurrency}" if plan.concurrency else ""
    if plan.expansion is not None and plan.expansion.seed is not None:
        extra += f", seed {plan.expansion.seed}"
    shown = ""
    if args.limit is not None and args.limit < len(plan):
        shown = f", showing {args.limit} of {len(plan)}"
    out.write(f"{args.spec}: {plural(len(plan), 'run')} ({kind}{extra}){shown}\n")
    for run in runs:
        shown = " ".join(f"{k}={_show(v)}" for k, v in run.params.items())
        out.write(f"\n[{run.index}] {shown}\n    $ {shlex.join(run.argv)}\n")
    return EXIT_OK


def _plan_search(args: argparse.Namespace, plan: Plan, out: IO[str]) -> int:
    """An adaptive search: its runs depend on results, so ``plan`` checks the searcher, says
    how many runs it makes (when known: hyperband's schedule is fixed) and shows one example
    run rendered from the space (its template errors would fail every run)."""
    import tempfile

    from orchestrator.search.registry import searcher_of
    from orchestrator.spec import models as m
    from orchestrator.wording import plural

    expansion, matrix = plan.expansion, plan.spec.operation.matrix
    assert expansion is not None
    with tempfile.TemporaryDirectory() as scratch:
        searcher = searcher_of(plan, work_dir=Path(scratch))
    assert searcher is not None
    example = next(iter(plan.runs()))
    total = searcher.total
    if args.json:
        import msgspec

        body = {
            "search": {"kind": expansion.kind, "total": total, "seed": expansion.seed},
            "example": {"params": example.params, "argv": example.argv},
        }
        out.write(msgspec.json.encode(body).decode() + "\n")
        return EXIT_OK
    runs = plural(total, "run") if total else "as many runs as results call for"
    extra = f", concurrency {plan.concurrency}" if plan.concurrency else ""
    out.write(f"{args.spec}: {expansion.kind} search, {runs} (seed {expansion.seed}{extra})\n")
    if isinstance(matrix, m.Hyperband):
        from orchestrator.search.hyperband import hyperband_schedule
        from orchestrator.spec.matrix import discrete_size

        assert matrix.max_iterations is not None and matrix.eta is not None
        resource = matrix.resource.type if matrix.resource else None
        space = discrete_size(expansion.dimensions) if expansion.dimensions else None
        for b in hyperband_schedule(matrix.max_iterations, matrix.eta, resource, space):
            rungs = " → ".join(f"{r.num_runs}@{r.resource:g}" for r in b.rungs)
            out.write(f"  iteration {b.iteration} (bracket {b.bracket}): {rungs}\n")
    shown = " ".join(f"{k}={_show(v)}" for k, v in example.params.items())
    out.write(
        "\nruns are suggested as results come; an example, drawn from the space:\n"
        f"  {shown}\n    $ {shlex.join(example.argv)}\n"
    )
    return EXIT_OK


def _write_json(runs: Iterable[RunSpec], out: IO[str]) -> None:
    """``{"runs": [...]}`` written as the runs are rendered, one run a write: a plan of a
    million runs is never held in memory (the same bytes as encoding the whole list).
    Nothing is written before the first run has rendered, so a spec whose runs cannot
    render (the usual error: every run fails alike) prints its error and no partial JSON."""
    import msgspec

    encode = msgspec.json.Encoder().encode
    separator = '{"runs": ['
    for r in runs:
        out.write(
            separator + encode({"index": r.index, "params": r.params, "argv": r.argv}).decode()
        )
        separator = ", "
    out.write(("]}" if separator == ", " else '{"runs": []}') + "\n")


def _show(value: Any) -> str:
    import msgspec

    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()
