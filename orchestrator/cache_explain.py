"""``cache explain RUN``: why a run missed the cache (or what it reused).

The cache plugin records, for every run it considers, its verdict and the parts of its key
(:class:`orchestrator.store.cache.Decision`). A miss is explained by its recorded reason and,
when there was no entry with the run's key, by the parts that differ from the nearest entry
stored before the run started: one with the same component and params when there is one.
Parts are named ``GROUP:NAME`` (``params:lr``, ``code:tree``); this module compares them
without knowing how they were computed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator.engine.recovery import open_journal
from orchestrator.exceptions import NotFoundError
from orchestrator.history import find_run
from orchestrator.store.cache import CacheEntry, CacheStore, Decision
from orchestrator.store.layout import journal_path

__all__ = ["Change", "changes", "print_explanation"]

#: The order groups are reported in; others follow, by name.
_GROUPS = ("component", "params", "types", "command", "env", "code", "init", "connections")
_HASH = re.compile(r"[0-9a-f]{32,64}")
_NO_ENTRY = "no entry with this key"


@dataclass(frozen=True)
class Change:
    """One part that differs: ``group`` changed, ``name`` went from ``old`` to ``new``
    (``None``: absent on that side)."""

    group: str
    name: str
    old: Any
    new: Any


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The parts that differ between two keys, in report order."""
    found = []
    for part in sorted(old.keys() | new.keys()):
        if old.get(part) != new.get(part) or (part in old) != (part in new):
            group, _, name = part.partition(":")
            found.append(Change(group, name, old.get(part), new.get(part)))
    rank = {group: i for i, group in enumerate(_GROUPS)}
    return sorted(found, key=lambda c: (rank.get(c.group, len(_GROUPS)), c.group, c.name))


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if _HASH.fullmatch(text):
        return text[:12]
    return text if len(text) <= 60 else text[:57] + "..."


def _change_text(change: Change) -> str:
    name = f"{change.name} " if change.name else ""
    if change.old is None and change.new is not None:
        return f"{name}added ({_shown(change.new)})"
    if change.new is None and change.old is not None:
        return f"{name}removed (was {_shown(change.old)})"
    return f"{name}{_shown(change.old)}→{_shown(change.new)}"


def change_lines(found: list[Change]) -> list[str]:
    """``params changed: lr 0.1→0.2, depth 3→4``: one line per group."""
    lines: dict[str, list[str]] = {}
    for change in found:
        lines.setdefault(change.group, []).append(_change_text(change))
    return [f"{group} changed: {', '.join(texts)}" for group, texts in lines.items()]


def _nearest(decision: Decision, entries: list[CacheEntry]) -> CacheEntry | None:
    """The entry stored before the run started that is most like it: same component first,
    then the fewest differing params, then the fewest differing parts, then the newest."""
    earlier = [
        e
        for e in entries
        if e.parts and e.run_id != decision.run_id and e.finished_at <= decision.decided_at
    ]
    if not earlier:
        return None

    def distance(entry: CacheEntry) -> tuple[int, int, int, float]:
        found = changes(entry.parts, decision.parts)
        component = sum(c.group == "component" for c in found)
        params = sum(c.group in ("params", "types") for c in found)
        return component, params, len(found), -entry.finished_at

    return min(earlier, key=distance)


@dataclass
class Explanation:
    run_id: str
    where: str
    verdict: str
    detail: str
    source_run_id: str | None = None
    compared_with: CacheEntry | None = None
    found: list[Change] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"run {self.run_id[:12]} ({self.where})"
        if self.verdict == "none":
            return [f"{head}: {self.detail}"]
        if self.verdict == "hit":
            return [f"{head} was a cache hit: it reused run {(self.source_run_id or '?')[:12]}"]
        lines = [f"{head} missed the cache: {self.detail}"]
        if self.detail != _NO_ENTRY:
            return lines
        if self.compared_with is None:
            return [*lines, "new configuration: no earlier cache entry to compare with"]
        entry = self.compared_with
        lines.append(
            f"compared with the nearest earlier entry, run {entry.run_id[:12]} "
            f"(sweep {entry.sweep_id[:12]}):"
        )
        return lines + ["  " + line for line in change_lines(self.found) or ["no part differs"]]

    def as_json(self) -> dict[str, Any]:
        entry = self.compared_with
        return {
            "run": self.run_id,
            "verdict": self.verdict,
            "detail": self.detail,
            "source_run": self.source_run_id,
            "compared_with": None if entry is None else entry.run_id,
            "changes": [
                {"part": c.group, "name": c.name, "old": c.old, "new": c.new} for c in self.found
            ],
        }


def explain(home: Path, ref: str) -> Explanation:
    """Why the run ``ref`` (id, unique prefix or ``SWEEP:INDEX``) hit or missed the cache."""
    path = journal_path(home)
    if not path.exists():
        raise NotFoundError(f"no journal in {home} (run a sweep first, or pass --home)")
    journal = open_journal(path)
    try:
        run = find_run(journal, ref)
    finally:
        journal.close()
    where = f"{run.sweep_id[:12]}:{run.idx}"
    store = CacheStore(home)
    try:
        decision = store.decision(run.id)
        if decision is None:
            return Explanation(
                run.id,
                where,
                "none",
                "no cache decision recorded: the cache was off for it (a single run, "
                "cache.disable, --nocache, or the cache plugin not loaded), or it ran before "
                "decisions were recorded",
            )
        result = Explanation(
            run.id, where, decision.verdict, decision.detail, decision.source_run_id
        )
        if decision.verdict == "miss" and decision.detail == _NO_ENTRY:
            result.compared_with = _nearest(decision, store.entries())
            if result.compared_with is not None:
                result.found = changes(result.compared_with.parts, decision.parts)
        return result
    finally:
        store.close()


def print_explanation(home: Path, ref: str, out: IO[str], *, as_json: bool) -> int:
    result = explain(home, ref)
    if as_json:
        out.write(json.dumps(result.as_json(), default=str) + "\n")
    else:
        out.write("".join(line + "\n" for line in result.lines()))
    return 0
