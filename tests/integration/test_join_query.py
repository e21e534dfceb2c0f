"""Joins over a real sweep: six runs (real subprocesses, started by the CLI) journaled in a real
SQLite file, then selected, sorted and paged by a join's query, their values passed on as
lists in that order."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.states import SweepState
from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec import models as m
from orchestrator.spec.joins import parse_query, parse_sort
from orchestrator.store.join_query import resolve_joins, select_runs
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

#: Each run reports ``loss`` (a metric, twice: the last value counts) and ``score`` (a metric
#: that is also a declared output); the run with lr 0.6 fails after reporting.
SCRIPT = """
import json, sys
lr = float(sys.argv[1])
loss = round(abs(lr - 0.25), 4)
print(json.dumps({"metrics": {"loss": loss + 1}, "step": 0}), flush=True)
print(json.dumps({"metrics": {"loss": loss}, "step": 1}), flush=True)
print(json.dumps({"metrics": {"score": round(1 - loss, 4)}}), flush=True)
sys.exit(1 if lr == 0.6 else 0)
"""
LRS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Journal, str]]:
    """One real 6-run sweep (subprocesses started by the engine), run once for the module."""
    tmp = tmp_path_factory.mktemp("joins")
    (tmp / "train.py").write_text(SCRIPT)
    values = [{"lr": lr} for lr in LRS]
    spec = tmp / "sweep.yaml"
    spec.write_text(
        "version: 1.1\nkind: operation\nname: train\ntags: [joined]\n"
        f"matrix: {{kind: mapping, concurrency: 3, values: {json.dumps(values)}}}\n"
        "component:\n"
        "  inputs: [{name: lr, type: float}]\n"
        "  outputs: [{name: score, type: float, isOptional: true}]\n"
        "  run:\n    kind: job\n    container:\n"
        f"      command: [{json.dumps(sys.executable)}, {json.dumps(str(tmp / 'train.py'))}]\n"
        "      args: ['{{ lr }}']\n"
    )
    home = tmp / "home"
    journal = Journal(home / "journal.sqlite")
    try:
        plan = compile_plan(load_spec(spec), paths=run_paths(home))
        settings = SweepSettings(home=home, spec_path=str(spec), concurrency=3, grace=5.0)
        result = anyio.run(build_sweep(plan, settings, journal=journal).run)
        assert result.state is SweepState.FAILED  # one run failed
        yield journal, result.sweep_id
    finally:
        journal.close()


def _join(**fields: Any) -> m.Join:
    params = {
        name: m.Param(value=value, context_only=True if name.startswith("ctx_") else None)
        for name, value in fields.pop("params").items()
    }
    return m.Join(params=params, **fields)


Resolve = Callable[..., dict[str, m.Param]]


@pytest.fixture
def resolve(swept: tuple[Journal, str]) -> Resolve:
    journal, sweep_id = swept

    def _resolve(*joins: m.Join) -> dict[str, m.Param]:
        return resolve_joins(journal, [sweep_id], joins, {sweep_id: "train"})

    return _resolve


def test_the_two_best_by_loss_give_their_params_in_order(resolve: Resolve) -> None:
    joined = resolve(
        _join(
            query="status:succeeded",
            sort="metrics.loss",
            limit=2,
            params={"lrs": "inputs.lr", "scores": "outputs.score", "losses": "outputs.loss"},
        )
    )
    # loss = |lr - 0.25|: 0.2 and 0.3 tie at 0.05, then matrix order breaks the tie.
    assert joined["lrs"].value == [0.2, 0.3]
    assert joined["scores"].value == [0.95, 0.95]
    assert joined["losses"].value == [0.05, 0.05]  # the metric's last value, not its first


def test_descending_sort_offset_and_limit(resolve: Resolve) -> None:
    joined = resolve(
        _join(
            query="metrics.loss:>=0",
            sort="-metrics.loss",
            offset=1,
            limit=3,
            params={"lrs": "inputs.lr"},
        )
    )
    # losses: 0.15 0.05 0.05 0.15 0.25 0.35 for lr 0.1 ... 0.6
    assert joined["lrs"].value == [0.5, 0.1, 0.4]


def test_status_filters(resolve: Resolve) -> None:
    failed = resolve(_join(query="status:failed", params={"lrs": "inputs.lr"}))
    assert failed["lrs"].value == [0.6]
    not_failed = resolve(
        _join(query="status:~failed", sort="params.lr", params={"lrs": "inputs.lr"})
    )
    assert not_failed["lrs"].value == LRS[:5]
    either = resolve(
        _join(query="status:failed|stopped, metrics.loss:>0.3", params={"lrs": "inputs.lr"})
    )
    assert either["lrs"].value == [0.6]


def test_conditions_on_params_outputs_names_and_tags(resolve: Resolve) -> None:
    joined = resolve(
        _join(
            query="params.lr:>0.2, params.lr:<=0.5, name:tra%, tags:joined, outputs.score:~0.85",
            sort="-params.lr",
            params={"lrs": "inputs.lr"},
        )
    )
    assert joined["lrs"].value == [0.5, 0.3]  # 0.4 has score 0.85
    nothing = resolve(_join(query="name:evaluate", params={"lrs": "inputs.lr"}))
    assert nothing["lrs"].value == []


def test_context_only_and_whole_sections_and_globals(
    resolve: Resolve, swept: tuple[Journal, str]
) -> None:
    journal, sweep_id = swept
    joined = resolve(
        _join(
            query="params.lr:0.1",
            params={
                "ctx_uuids": "globals.uuid",
                "names": "globals.name",
                "statuses": "{{ globals.status }}",
                "inputs": "inputs",
                "outputs": "outputs",
                "paths": "artifacts.base",
            },
        )
    )
    run = journal.latest_runs(sweep_id)[0]
    assert joined["ctx_uuids"].context_only is True
    assert joined["ctx_uuids"].value == [run.id]
    assert joined["inputs"].context_only is None
    assert joined["names"].value == ["train"]
    assert joined["statuses"].value == ["succeeded"]
    assert joined["inputs"].value == [{"lr": 0.1}]
    assert joined["outputs"].value == [{"loss": 0.15, "score": 0.85}]
    assert joined["paths"].value == [run.run_dir]


def test_a_limit_is_applied_by_sqlite(swept: tuple[Journal, str]) -> None:
    journal, sweep_id = swept
    runs = select_runs(
        journal,
        [sweep_id],
        parse_query("status:succeeded", "q"),
        parse_sort("-created_at", "s"),
        limit=1,
    )
    assert len(runs) == 1


def test_a_bad_query_names_the_join(resolve: Resolve, swept: tuple[Journal, str]) -> None:
    journal, sweep_id = swept
    with pytest.raises(SpecError, match=r"^run.operations\[evaluate\].joins\[0\].query: "):
        resolve_joins(
            journal,
            [sweep_id],
            [_join(query="metrics.loss:low", params={"x": "inputs.lr"})],
            {sweep_id: "train"},
            where="run.operations[evaluate].joins",
        )


def test_no_sweeps_select_nothing(swept: tuple[Journal, str], tmp_path: Path) -> None:
    journal, _ = swept
    assert resolve_joins(
        journal, [], [_join(query="status:succeeded", params={"x": "inputs"})], {}
    ) == {"x": m.Param(value=[])}


def test_a_limited_join_over_50000_runs_reads_only_its_page(tmp_path: Path) -> None:
    """The filter, the sort (by a metric's last value) and the page are SQLite's: joining the
    best 5 of 50,000 runs builds 5 rows in Python, not 50,000 (measured by tracemalloc: the
    rows alone would take tens of MB)."""
    import sqlite3
    import tracemalloc

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        sweep_id = "s" * 32
        journal.add_sweep(
            sweep_id,
            name="big",
            description=None,
            tags=[],
            spec_path="x",
            kind="grid",
            total=50_000,
            concurrency=1,
            pid=1,
            seed=None,
        )
        journal.close()
        db = sqlite3.connect(tmp_path / "journal.sqlite")
        with db:
            db.executemany(
                "INSERT INTO runs (id, sweep_id, idx, params, argv, state, created_at, "
                "params_hash) VALUES (?, ?, ?, ?, '[]', 'succeeded', 1.0, ?)",
                (
                    (f"r{i:031d}", sweep_id, i, json.dumps({"lr": i, "pad": "x" * 200}), f"h{i}")
                    for i in range(50_000)
                ),
            )
            db.executemany(
                "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, 'loss', 0, ?, 1.0)",
                ((f"r{i:031d}", (i * 7919) % 50_000) for i in range(50_000)),
            )
        db.close()
        journal = Journal(tmp_path / "journal.sqlite")
        join = _join(
            query="status:succeeded", sort="metrics.loss", limit=5, params={"lrs": "inputs.lr"}
        )
        tracemalloc.start()
        try:
            joined = resolve_joins(journal, [sweep_id], [join], {sweep_id: "big"})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert joined["lrs"].value == [0, 17679, 35358, 3037, 20716]  # losses 0, 1, 2, 3, 4
        assert peak < 2_000_000, peak
    finally:
        journal.close()
