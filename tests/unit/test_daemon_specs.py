"""The daemon's spec memo: an inline spec is loaded once and, once its compile is known to be
quick, compiled on the event loop; a spec that refers to a file is read afresh every time
(an edit to the file shows in the next submission). Real spec files, a real worker thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.daemon import specs
from orchestrator.daemon.specs import Compile, SpecMemo
from orchestrator.exceptions import SpecError
from orchestrator.spec import LoadedSpec, Plan
from orchestrator.store.layout import run_paths

pytestmark = pytest.mark.anyio

INLINE = "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [/bin/true]}}\n"
BY_PATH = "version: 1.1\nkind: operation\npathRef: component.yaml\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each compile ran on, in order. Every compile counts as quick
    (a loaded machine must not make one look slow); a test may say otherwise."""
    monkeypatch.setattr(specs, "INLINE_COMPILE_S", 60.0)
    seen: list[str] = []
    compile_on = specs._timed_compile

    def recorded(loaded: LoadedSpec, how: Compile) -> tuple[Plan | Any, float]:
        seen.append(threading.current_thread().name)
        return compile_on(loaded, how)

    monkeypatch.setattr(specs, "_timed_compile", recorded)
    return seen


def _how(tmp_path: Path, **params: str) -> Compile:
    return Compile(params, run_paths(tmp_path / "home"), name=None, open_mapping=False)


def _command(plan: object) -> Any:
    assert isinstance(plan, Plan)
    return next(plan.runs()).argv


async def test_an_inline_spec_is_loaded_once_then_compiled_on_the_loop(
    tmp_path: Path, threads: list[str]
) -> None:
    memo = SpecMemo()
    first, _ = await memo.prepare(INLINE, "<submitted>", tmp_path, _how(tmp_path))
    second, plan = await memo.prepare(INLINE, "<submitted>", tmp_path, _how(tmp_path))
    assert second is first, "loaded once"
    assert _command(plan) == ["/bin/true"]
    main = threading.current_thread().name
    assert threads[0] != main, "the first compile of a spec runs in a worker thread"
    assert threads[1] == main, "a compile known to be quick runs on the loop"


async def test_other_overrides_compile_in_a_thread_first(
    tmp_path: Path, threads: list[str]
) -> None:
    memo = SpecMemo()
    text = INLINE.replace("[/bin/true]", '["/bin/echo", "{{ params.x.value }}"]')
    text += "inputs: [{name: x, type: str}]\n"
    for x in ("a", "a", "b"):
        _, plan = await memo.prepare(text, "<submitted>", tmp_path, _how(tmp_path, x=x))
        assert _command(plan) == ["/bin/echo", x]
    main = threading.current_thread().name
    assert [name == main for name in threads] == [False, True, False]


async def test_a_slow_compile_never_runs_on_the_loop(
    tmp_path: Path, threads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(specs, "INLINE_COMPILE_S", 0.0)  # every compile counts as slow
    memo = SpecMemo()
    for _ in range(3):
        await memo.prepare(INLINE, "<submitted>", tmp_path, _how(tmp_path))
    assert threading.current_thread().name not in threads


async def test_a_spec_that_refers_to_a_file_is_read_afresh(tmp_path: Path) -> None:
    component = tmp_path / "component.yaml"
    memo = SpecMemo()
    plans = []
    for word in ("one", "two"):
        component.write_text(INLINE.replace("[/bin/true]", f"[/bin/echo, {word}]"))
        _, plan = await memo.prepare(BY_PATH, "<submitted>", tmp_path, _how(tmp_path))
        plans.append(_command(plan))
    assert plans == [["/bin/echo", "one"], ["/bin/echo", "two"]], "the edit shows"
    assert len(memo) == 0


async def test_a_bad_spec_is_refused_each_time(tmp_path: Path) -> None:
    memo = SpecMemo()
    for _ in range(2):
        with pytest.raises(SpecError):
            await memo.prepare(
                "version: 1.1\nkind: nope\n", "<submitted>", tmp_path, _how(tmp_path)
            )
    assert len(memo) == 0


async def test_the_memo_is_bounded(tmp_path: Path) -> None:
    memo = SpecMemo(entries=2)
    for n in range(4):
        text = INLINE + f"# {n}\n"
        await memo.prepare(text, "<submitted>", tmp_path, _how(tmp_path))
    assert len(memo) == 2
