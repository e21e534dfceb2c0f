"""Looks at the code (git) shared between the sweeps that ask at once: a daemon taking
submissions in a burst runs git once per burst, never gives a sweep a look that started
before it asked, and builds an unchanged record once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from orchestrator import provenance
from orchestrator.provenance import REDACTED, collect
from tests.git_repo import committed_repo

TIMEOUT = 30.0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one committed file and nothing changed."""
    repo = committed_repo(tmp_path / "project", {"train.py": "print('first')\n"})
    return repo


class Gate:
    """A look that waits, on its first call, until the test opens the gate (after it
    returned what it saw): the test decides what happens while a look runs."""

    def __init__(self, look: Callable[[Path], Any]) -> None:
        self.look = look
        self.calls = 0
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, folder: Path) -> Any:
        self.calls += 1
        seen = self.look(folder)
        if self.calls == 1:
            self.entered.set()
            assert self.opened.wait(TIMEOUT), "the test never opened the gate"
        return seen


class Callers:
    """Threads each calling ``ask()``; their answers (or exceptions), in start order."""

    def __init__(self, ask: Callable[[], Any]) -> None:
        self.ask = ask
        self.answers: dict[int, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            slot = len(self.threads)
            thread = threading.Thread(target=self._one, args=(slot,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _one(self, slot: int) -> None:
        try:
            self.answers[slot] = self.ask()
        except Exception as exc:
            self.answers[slot] = exc

    def join(self) -> list[Any]:
        for thread in self.threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "a caller never got its answer"
        return [self.answers[i] for i in range(len(self.threads))]


@pytest.fixture
def joined(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """Released by each caller that joins a look someone else runs (it then waits for it)."""
    joins = threading.Semaphore(0)
    real_wait = provenance._Shared.wait

    def wait(self: provenance._Shared) -> Any:
        joins.release()
        return real_wait(self)

    monkeypatch.setattr(provenance._Shared, "wait", wait)
    return joins


@pytest.fixture
def opened_at_the_end() -> Iterator[list[Gate]]:
    """Gates a test made are opened when it ends, whatever happened (no thread left hung)."""
    gates: list[Gate] = []
    yield gates
    for gate in gates:
        gate.opened.set()


def _held_look(
    gate: Gate, folder: Path, opened_at_the_end: list[Gate]
) -> tuple[provenance._Looks, Callers]:
    """Looks that never pause, and a first caller whose look is held at ``gate``."""
    opened_at_the_end.append(gate)
    looks = provenance._Looks(gate)
    looks.share = 1.0  # no pause: the next look may start at once
    first = Callers(lambda: looks.get(folder))
    first.start()
    assert gate.entered.wait(TIMEOUT)
    return looks, first


def test_callers_asking_during_a_look_share_the_next_one(
    tmp_path: Path, joined: threading.Semaphore, opened_at_the_end: list[Gate]
) -> None:
    """Eight sweeps ask while one look runs: git runs once more for all eight, not eight
    times (a daemon took both cores running 3 to 5 git processes per submission)."""
    versions = iter(["before", "after", "third"])
    gate = Gate(lambda folder: (next(versions), None, None, None))
    looks, first = _held_look(gate, tmp_path, opened_at_the_end)
    later = Callers(lambda: looks.get(tmp_path))
    later.start(8)
    for _ in range(7):  # the eighth runs the next look itself, once this one has ended
        assert joined.acquire(timeout=TIMEOUT), "a caller neither joined nor looked itself"
    assert looks.waiting(tmp_path) == 8
    gate.opened.set()
    assert first.join() == [("before", None, None, None)]
    assert later.join() == [("after", None, None, None)] * 8
    assert gate.calls == 2


def test_a_change_made_while_a_look_runs_is_seen_by_who_asks_after_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch, opened_at_the_end: list[Gate]
) -> None:
    """A look that started before a sweep asked is never its answer: the file edited while
    it ran shows in the next sweep's record (dirty, in the diff), not in the first one's."""
    gate = Gate(provenance._look)
    opened_at_the_end.append(gate)
    monkeypatch.setattr(provenance._LOOKS, "_look", gate)
    monkeypatch.setattr(provenance._LOOKS, "share", 1.0)
    first = Callers(lambda: collect(repo, {}))
    first.start()
    assert gate.entered.wait(TIMEOUT)  # it has looked (clean) and not answered yet
    (repo / "train.py").write_text("print('edited')\n")
    second = Callers(lambda: collect(repo, {}))
    second.start()
    gate.opened.set()
    [before], [after] = first.join(), second.join()
    assert before.git_dirty is False and before.diff is None
    assert after.git_dirty is True and "+print('edited')" in (after.diff or "")
    assert after.git_commit == before.git_commit and after.git_tree == before.git_tree


def test_a_failed_look_fails_every_caller_that_shared_it(
    tmp_path: Path, joined: threading.Semaphore, opened_at_the_end: list[Gate]
) -> None:
    calls = []

    def look(folder: Path) -> Any:
        calls.append(folder)
        if len(calls) == 2:
            raise OSError("no git today")
        return ("ok", None, None, None)

    gate = Gate(look)
    looks, first = _held_look(gate, tmp_path, opened_at_the_end)
    later = Callers(lambda: looks.get(tmp_path))
    later.start(3)
    for _ in range(2):
        assert joined.acquire(timeout=TIMEOUT)
    gate.opened.set()
    assert first.join() == [("ok", None, None, None)]
    answers = later.join()
    assert all(isinstance(a, OSError) for a in answers), answers
    assert looks.get(tmp_path) == ("ok", None, None, None)  # the next look is a new one


def test_the_record_and_its_dict(repo: Path) -> None:
    """The same facts give the same record (built once); another environment is redacted
    afresh; the dict is a copy, environment included, with the fields of ``asdict``."""
    env = {"PATH": "/bin", "API_TOKEN": "t"}
    one = collect(repo, env)
    assert collect(repo, dict(env)) is one
    other = collect(repo, {"PATH": "/bin", "API_TOKEN": "u", "DB_PASSWORD": "p"})
    assert other.environment == {"PATH": "/bin", "API_TOKEN": REDACTED, "DB_PASSWORD": REDACTED}
    assert one.git_dirty is False and one.git_commit and one.git_tree
    record = one.as_dict()
    assert record == asdict(one) and list(record) == list(asdict(one))
    record["environment"]["PATH"] = "/elsewhere"
    assert one.environment["PATH"] == "/bin"
