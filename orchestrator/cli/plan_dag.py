"""``plan`` of a pipeline: its nodes in topological order, what each waits for, and each node's
runs as ``plan`` shows a sweep's (values that upstream operations will give appear as
``<ops.X.outputs.Y>`` placeholders).

``--json`` writes one object::

    {"kind": "dag", "name", "concurrency", "levels": [[names]],
     "nodes": [{"name", "upstream": [...], "trigger", "skip_on_upstream_skip", "conditions",
                "joins": N, "matrix": kind | null, "total": N | null,
                "runs": [{"index", "params", "argv"}]            (a single run or an expansion)
                | "search": {"kind", "total", "seed"}, "example": {"params", "argv"}}]}
"""

from __future__ import annotations

import itertools
import shlex
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from orchestrator.spec.dag import DagNode, DagPlan
    from orchestrator.spec.resolve import Plan, RunPaths

__all__ = ["plan_dag"]


def plan_dag(
    args: argparse.Namespace,
    dag: DagPlan,
    paths: RunPaths,
    out: IO[str],
    err: IO[str],
) -> None:
    """Write the DAG's plan (text or ``--json``)."""
    nodes = [_node_view(args, dag, dag.nodes[name], paths) for name in dag.order]
    if args.json:
        import msgspec

        body = {
            "kind": "dag",
            "name": dag.name,
            "concurrency": dag.concurrency,
            "levels": dag.levels,
            "nodes": nodes,
        }
        out.write(msgspec.json.encode(body).decode() + "\n")
        return
    for note in dag.spec.ignored:
        err.write(f"note: {note}: no local meaning, ignored\n")
    _write_text(args, dag, nodes, out)


def _node_view(
    args: argparse.Namespace, dag: DagPlan, node: DagNode, paths: RunPaths
) -> dict[str, Any]:
    from orchestrator.spec import compile_plan
    from orchestrator.spec.dag import display_spec

    plan = compile_plan(display_spec(dag, node.name), paths=paths, name=node.name)
    matrix = node.operation.matrix
    view: dict[str, Any] = {
        "name": node.name,
        "upstream": list(node.upstream),
        "trigger": node.trigger,
        "skip_on_upstream_skip": node.skip_on_upstream_skip,
        "conditions": node.operation.conditions,
        "joins": len(node.operation.joins or []),
        "matrix": matrix.__struct_config__.tag if matrix is not None else None,
    }
    if plan.expansion is not None and plan.expansion.adaptive:
        total, example = _search(plan)
        view["total"] = total
        view["search"] = {"kind": plan.expansion.kind, "total": total, "seed": plan.expansion.seed}
        view["example"] = {"params": example.params, "argv": example.argv}
        return view
    view["total"] = len(plan)
    runs = plan.runs()
    if args.limit is not None:
        runs = itertools.islice(runs, args.limit)
    view["runs"] = [{"index": r.index, "params": r.params, "argv": r.argv} for r in runs]
    return view


def _search(plan: Plan) -> tuple[int | None, Any]:
    """An adaptive node: how many runs its searcher makes (when known) and an example run."""
    import tempfile
    from pathlib import Path

    from orchestrator.search.registry import searcher_of

    with tempfile.TemporaryDirectory() as scratch:
        searcher = searcher_of(plan, work_dir=Path(scratch))
    assert searcher is not None
    return searcher.total, next(iter(plan.runs()))


def _write_text(
    args: argparse.Namespace, dag: DagPlan, nodes: list[dict[str, Any]], out: IO[str]
) -> None:
    from orchestrator.wording import plural

    extra = f", concurrency {dag.concurrency}" if dag.concurrency else ""
    if dag.early_stopping:
        extra += f", {plural(len(dag.early_stopping), 'early stopping rule')}"
    out.write(f"{args.spec}: DAG, {plural(len(nodes), 'operation')}{extra}\n")
    for view in nodes:
        out.write(f"\n{view['name']}: {_runs_line(args, view)}\n")
        after = ", ".join(view["upstream"]) or "nothing"
        line = f"  after: {after}"
        if view["upstream"]:
            line += f" (trigger {view['trigger']}"
            line += ", skipped if an upstream is skipped)" if view["skip_on_upstream_skip"] else ")"
        out.write(line + "\n")
        if view["conditions"] is not None:
            out.write(f"  runs only if: {view['conditions']}\n")
        if view["joins"]:
            joins = "1 query" if view["joins"] == 1 else f"{view['joins']} queries"
            out.write(f"  joins: {joins} over finished runs\n")
        if "search" in view:
            example = view["example"]
            out.write(
                f"  an example, drawn from the space:\n    {_params(example['params'])}\n"
                f"      $ {shlex.join(example['argv'])}\n"
            )
            continue
        for run in view["runs"]:
            out.write(f"  [{run['index']}] {_params(run['params'])}\n")
            out.write(f"      $ {shlex.join(run['argv'])}\n")


def _runs_line(args: argparse.Namespace, view: dict[str, Any]) -> str:
    from orchestrator.wording import plural

    total = view["total"]
    if "search" in view:
        runs = plural(total, "run") if total else "as many runs as results call for"
        return f"{view['search']['kind']} search, {runs} (seed {view['search']['seed']})"
    kind = view["matrix"] or "single run"
    shown = ""
    if args.limit is not None and args.limit < total:
        shown = f", showing {args.limit} of {total}"
    return f"{plural(total, 'run')} ({kind}){shown}"


def _params(params: dict[str, Any]) -> str:
    import msgspec

    return " ".join(
        f"{k}={v if isinstance(v, str) else msgspec.json.encode(v).decode()}"
        for k, v in params.items()
    )
