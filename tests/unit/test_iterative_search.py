"""The iterative searcher, driven through the searcher interface with a real tuner process
(``tests/components/halving_tuner.py``); the runs' observations are synthetic."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.exceptions import SearchError, SpecError
from orchestrator.search.base import DONE, WAIT, Observation, Past, Searcher, Suggestion
from orchestrator.search.iterative import IterativeSearcher
from orchestrator.spec import models as m
from orchestrator.spec.hyperparams import build_dimension
from orchestrator.spec.load import load_spec
from orchestrator.tracking import log_outputs
from tests.procwait import gone_within

TUNER = Path(__file__).parent.parent / "components" / "halving_tuner.py"

TUNER_YAML = f"""
version: 1.1
kind: component
name: halving
inputs:
- {{name: matrix, type: dict}}
- {{name: iteration, type: int}}
- {{name: configs, type: 'List[Dict]'}}
- {{name: metrics, type: 'List[Dict]'}}
- {{name: mode, type: str, value: halving}}
- {{name: calls, type: str, isOptional: true}}
- {{name: fifo, type: str, isOptional: true}}
outputs:
- {{name: suggestions, type: 'List[Dict]'}}
run:
  kind: job
  container:
    image: python:3.11
    command: [{json.dumps(sys.executable)}, {json.dumps(str(TUNER))}]
    args:
    - "{{{{ params.matrix.as_arg }}}}"
    - "{{{{ params.configs.as_arg }}}}"
    - "{{{{ params.metrics.as_arg }}}}"
    - "{{{{ params.iteration.as_arg }}}}"
    - "{{{{ params.mode.as_arg }}}}"
    - "{{{{ params.calls.as_arg }}}}"
    - "{{{{ params.fifo.as_arg }}}}"
"""


def spec_text(hub_ref: str, max_iterations: int = 3, **params: str) -> str:
    tuner_params = "".join(f"\n      {k}: {{value: {json.dumps(v)}}}" for k, v in params.items())
    return f"""
version: 1.1
kind: operation
matrix:
  kind: iterative
  maxIterations: {max_iterations}
  concurrency: 2
  params:
    lr: {{kind: uniform, value: "0:1"}}
  tuner:
    hubRef: {hub_ref}
    params:{tuner_params or " {}"}
component:
  inputs: [{{name: lr, type: float}}]
  run: {{kind: job, container: {{command: [echo, "{{{{ lr }}}}"]}}}}
"""


def make(
    tmp_path: Path, hub_ref: str = "tuner.yaml", timeout: float = 60.0, **kw: Any
) -> IterativeSearcher:
    """A searcher for a polyaxonfile in ``tmp_path`` whose tuner is the halving tuner."""
    (tmp_path / "tuner.yaml").write_text(TUNER_YAML)
    path = tmp_path / "sweep.yaml"
    path.write_text(spec_text(hub_ref, **kw))
    loaded = load_spec(path)
    matrix = loaded.operation.matrix
    assert isinstance(matrix, m.Iterative) and matrix.params is not None
    dims = {k: build_dimension(v, f"matrix.params.{k}") for k, v in matrix.params.items()}
    return IterativeSearcher(
        matrix,
        dims,
        7,
        work_dir=tmp_path / "sweep",
        source=str(path),
        base_dir=tmp_path,
        inputs=["lr"],
        timeout=timeout,
    )


def loss(params: dict[str, Any]) -> float:
    return (float(params["lr"]) - 0.35) ** 2


async def drive(
    searcher: Searcher,
    slots: int = 10,
    fail: frozenset[int] = frozenset(),
    running: dict[int, Suggestion] | None = None,
    start: int = 0,
) -> list[tuple[int, Suggestion]]:
    """Ask for configurations while slots are free; on WAIT end a run (the engine's loop, with
    synthetic results). Runs in ``fail`` fail; ``running``: runs going already (a resumed
    sweep's, run again); ``start``: the next run index."""
    log: list[tuple[int, Suggestion]] = []
    running = dict(running or {})
    index = start
    while True:
        got = await searcher.suggest(index) if len(running) < slots else WAIT
        if isinstance(got, Suggestion):
            running[index] = got
            log.append((index, got))
            index += 1
            continue
        if got is DONE:
            assert not running
            return log
        assert running, "WAIT with nothing running"
        done = max(running) if len(running) > 1 else min(running)  # out of order on purpose
        ended = running.pop(done)
        state = "failed" if done in fail else "succeeded"
        searcher.observe(done, Observation(state, metrics={"loss": loss(ended.params)}))


def lrs(log: list[tuple[int, Suggestion]]) -> list[tuple[int, float]]:
    return [(s.place["iteration"], s.params["lr"]) for _, s in log]


def test_three_iterations_each_from_the_tuner(tmp_path: Path) -> None:
    searcher = make(tmp_path)
    assert isinstance(searcher, Searcher) and searcher.total is None
    log = anyio.run(drive, searcher)
    # 0: the tuner's opening; 1: 0.5 ± 0.4 around the best (0.5); 2: 0.5 ± 0.2 (0.5 still best)
    assert lrs(log) == [(0, 0.5), (1, 0.1), (1, 0.9), (2, 0.3), (2, 0.7)]
    folder = tmp_path / "sweep" / "tuner"
    told = json.loads((folder / "iteration-2" / "inputs.json").read_text())
    assert told["iteration"] == 2
    assert told["configs"] == [{"lr": 0.5}, {"lr": 0.1}, {"lr": 0.9}]  # run order, not end order
    assert told["metrics"] == [{"loss": loss({"lr": x})} for x in (0.5, 0.1, 0.9)]
    assert told["matrix"]["kind"] == "iterative" and told["matrix"]["seed"] == 7
    assert json.loads((folder / "iteration-2" / "suggestions.json").read_text()) == [
        {"lr": 0.3},
        {"lr": 0.7},
    ]
    assert not (folder / "iteration-3").exists()  # maxIterations: 3 is iterations 0, 1, 2


def test_one_slot_gives_the_same_iterations(tmp_path: Path) -> None:
    log = anyio.run(drive, make(tmp_path), 1)
    assert lrs(log) == [(0, 0.5), (1, 0.1), (1, 0.9), (2, 0.3), (2, 0.7)]


def test_failed_runs_are_not_told_to_the_tuner(tmp_path: Path) -> None:
    log = anyio.run(drive, make(tmp_path), 10, frozenset({2}))
    told = json.loads((tmp_path / "sweep/tuner/iteration-2/inputs.json").read_text())
    assert told["configs"] == [{"lr": 0.5}, {"lr": 0.1}]
    assert len(log) == 5


def test_hub_ref_resolves_in_the_local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hub"
    (hub / "acme").mkdir(parents=True)
    (hub / "acme" / "halving.yaml").write_text(TUNER_YAML)
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))
    log = anyio.run(drive, make(tmp_path, "acme/halving:v1", max_iterations=2))
    assert lrs(log) == [(0, 0.5), (1, 0.1), (1, 0.9)]


def test_missing_tuner_is_a_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HUB", raising=False)
    with pytest.raises(SpecError) as caught:
        make(tmp_path, "no-such-tuner")
    message = str(caught.value)
    assert "sweep.yaml: matrix.tuner.hubRef: cannot resolve 'no-such-tuner'" in message
    assert "\n" not in message
    with pytest.raises(SpecError, match="pathRef target not found"):
        make(tmp_path, "missing.yaml")


def test_a_tuner_that_cannot_take_its_params_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no input or output named 'speed'"):
        make(tmp_path, speed="fast")


def test_empty_suggestions_end_the_search(tmp_path: Path) -> None:
    log = anyio.run(drive, make(tmp_path, mode="empty"))
    assert lrs(log) == [(0, 0.5)]


def test_one_iteration_runs_the_tuner_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    log = anyio.run(drive, make(tmp_path, max_iterations=1, calls=str(calls)))
    assert lrs(log) == [(0, 0.5)]
    assert calls.read_text().split() == ["0"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", "tuner 'halving' (iteration 0): failed (exit status 3): ValueError: no good lr"),
        ("silent", "printed no suggestions (call orchestrator.tracking.log_outputs("),
        ("not-a-list", "suggestions must be a list of dicts, got dict {'lr': 0.1}"),
        ("bad-item", "suggestions[1] must be a dict of matrix keys to values, got int 3"),
        ("unknown-key", "suggestions[0] sets 'momentum', which is neither a matrix param nor"),
    ],
)
def test_a_misbehaving_tuner_fails_the_search_in_one_line(
    tmp_path: Path, mode: str, expected: str
) -> None:
    searcher = make(tmp_path, mode=mode)
    with pytest.raises(SearchError) as caught:
        anyio.run(searcher.suggest, 0)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_command_that_is_not_there_fails_in_one_line(tmp_path: Path) -> None:
    searcher = make(tmp_path)
    searcher.tuner.component.run.container.command = ["/no/such/tuner"]  # type: ignore[union-attr]
    with pytest.raises(SearchError, match=r"cannot start '/no/such/tuner': No such file"):
        anyio.run(searcher.suggest, 0)


def read_pids(fifo: Path, into: list[int]) -> None:
    with open(fifo) as f:  # blocks until the tuner opens it: no polling
        into.extend(json.loads(f.read()))


def test_a_hung_tuner_times_out_and_its_process_group_is_killed(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    searcher = make(tmp_path, timeout=5.0, mode="hang", fifo=str(fifo))
    pids: list[int] = []
    reader = threading.Thread(target=read_pids, args=(fifo, pids), daemon=True)
    reader.start()
    with pytest.raises(SearchError, match=r"\(iteration 0\): timed out after 5s and was stopped"):
        anyio.run(searcher.suggest, 0)
    reader.join(10)
    assert len(pids) == 2, "the tuner did not start within its timeout (machine overloaded?)"
    assert all(gone_within(pid, 10) for pid in pids)  # the tuner and the child it left


def test_a_cancelled_search_kills_its_tuner(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    searcher = make(tmp_path, mode="hang", fifo=str(fifo))
    pids: list[int] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(searcher.suggest, 0)
            await anyio.to_thread.run_sync(read_pids, fifo, pids)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert len(pids) == 2
    assert all(gone_within(pid, 10) for pid in pids)


def history(log: list[tuple[int, Suggestion]], ended: set[int]) -> list[Past]:
    return [
        Past(i, s, Observation("succeeded", {"loss": loss(s.params)}) if i in ended else None)
        for i, s in log
    ]


def test_restore_mid_iteration_waits_for_its_runs_then_runs_the_tuner(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    first = make(tmp_path, calls=str(calls))

    async def crash_mid_iteration() -> list[tuple[int, Suggestion]]:
        log = []
        for index in range(3):  # iteration 0 (one run), then both runs of iteration 1
            got = await first.suggest(index)
            assert isinstance(got, Suggestion)
            log.append((index, got))
            if index == 0:
                first.observe(0, Observation("succeeded", {"loss": loss(got.params)}))
        first.observe(2, Observation("succeeded", {"loss": loss(log[2][1].params)}))
        return log

    log = anyio.run(crash_mid_iteration)
    assert lrs(log) == [(0, 0.5), (1, 0.1), (1, 0.9)]
    second = make(tmp_path, calls=str(calls))
    second.restore(history(log, ended={0, 2}))  # run 1 was in flight

    async def resume() -> list[tuple[int, Suggestion]]:
        assert await second.suggest(3) is WAIT  # iteration 1 is not complete: no tuner yet
        assert not (tmp_path / "sweep/tuner/iteration-2").exists()
        return await drive(second, running={1: log[1][1]}, start=3)

    rest = anyio.run(resume)
    assert calls.read_text().split() == ["0", "1", "2"]  # each iteration's tuner ran once
    assert lrs(rest) == [(2, 0.3), (2, 0.7)]
    told = json.loads((tmp_path / "sweep/tuner/iteration-2/inputs.json").read_text())
    assert told["configs"] == [{"lr": 0.5}, {"lr": 0.1}, {"lr": 0.9}]


def test_restore_hands_out_the_rest_of_the_iteration_without_rerunning_the_tuner(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.log"
    first = make(tmp_path, calls=str(calls))

    async def crash_after_one_of_two() -> list[tuple[int, Suggestion]]:
        s0 = await first.suggest(0)
        assert isinstance(s0, Suggestion)
        first.observe(0, Observation("succeeded", {"loss": loss(s0.params)}))
        s1 = await first.suggest(1)  # the first of iteration 1's two: one slot
        assert isinstance(s1, Suggestion)
        return [(0, s0), (1, s1)]

    log = anyio.run(crash_after_one_of_two)
    second = make(tmp_path, calls=str(calls))
    second.restore(history(log, ended={0}))
    rest = anyio.run(drive, second, 2, frozenset(), {1: log[1][1]}, 2)
    assert lrs(rest) == [(1, 0.9), (2, 0.3), (2, 0.7)]
    assert calls.read_text().split() == ["0", "1", "2"]


def test_restore_of_a_complete_iteration_runs_the_next_tuner(tmp_path: Path) -> None:
    first = make(tmp_path)
    log = anyio.run(drive, first)
    second = make(tmp_path, max_iterations=4)
    second.restore(history(log, ended={i for i, _ in log}))
    rest = anyio.run(drive, second, 10, frozenset(), None, len(log))
    assert [it for it, _ in lrs(rest)] == [3, 3]


def test_log_outputs_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    class Scalar:  # a NumPy scalar's shape: item() gives the number
        def item(self) -> float:
            return 0.25

    log_outputs(suggestions=[{"lr": 0.1, "layers": (2, 3)}], best=Scalar())
    assert capsys.readouterr().out == (
        '{"outputs": {"suggestions": [{"lr": 0.1, "layers": [2, 3]}], "best": 0.25}}\n'
    )
    with pytest.raises(ValueError, match="JSON"):
        log_outputs(best=float("nan"))
    with pytest.raises(TypeError, match="object is not JSON"):
        log_outputs(best=object())


def test_outputs_are_read_across_chunks_and_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.search import tuner_process

    monkeypatch.setattr(tuner_process, "MAX_LINE_BYTES", 64)
    monkeypatch.setattr(tuner_process, "MAX_LOG_BYTES", 100)
    scan = tuner_process._OutputsScan(tmp_path / "stdout.log")
    text = (
        b'noise\n{"outputs": {"suggestions": [{"lr": 1}], "a": 1}}\n{not json\n'
        b'{"metrics": {"loss": 1}}\n{"outputs": {"suggestions": [{"lr": 2}]}}'
    )
    for at in range(0, len(text), 7):  # lines cut anywhere
        scan.feed(text[at : at + 7])
    scan.close()
    assert scan.outputs == {"suggestions": [{"lr": 2}], "a": 1} and scan.problem is None
    assert (tmp_path / "stdout.log").read_bytes() == text[:100]

    long = tuner_process._OutputsScan(tmp_path / "long.log")
    long.feed(b'{"outputs": {"suggestions": "' + b"x" * 100 + b'"}}\n{"outputs": {"b": 2}}\n')
    long.close()
    assert long.outputs == {"b": 2}
    assert long.problem == "printed an outputs line over 64 bytes"
