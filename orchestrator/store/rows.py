"""Typed rows of the journal's ``sweeps`` and ``runs`` tables (what its reads return).

Each row is built from a tuple in the column order of its fields (the journal selects exactly
these columns, in this order, see :data:`SWEEP_COLUMNS` and :data:`RUN_COLUMNS`); JSON columns
come back decoded.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

__all__ = [
    "RUN_COLUMNS",
    "SWEEP_COLUMNS",
    "CleanupRow",
    "OpenMappingRow",
    "RunRow",
    "SuggestionRow",
    "SweepRow",
]


class SweepRow(msgspec.Struct, frozen=True):
    """One sweep, as journaled."""

    id: str
    name: str | None
    description: str | None
    tags: list[str]
    spec_path: str | None
    kind: str | None
    total: int | None
    concurrency: int | None
    state: str
    reason: str | None
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    pid: int | None
    seed: int | None
    pid_start: int | None
    #: The ``-P`` values it ran with.
    overrides: dict[str, str]
    component_hash: str | None
    #: The spec text and base folder a daemon journaled (a restarted daemon resumes from them).
    spec_text: str | None
    base_dir: str | None
    via_daemon: bool
    #: A pipeline's node: the pipeline's sweep id, and the node's (operation's) name; a
    #: hook's run: the sweep it followed, and ``hook:<index>``. None: a top-level sweep.
    parent_id: str | None = None
    node: str | None = None

    @classmethod
    def from_db(cls, values: tuple[Any, ...]) -> SweepRow:
        """From the columns in :data:`SWEEP_COLUMNS` order."""
        v = list(values)
        v[_TAGS] = json.loads(v[_TAGS]) if v[_TAGS] else []
        v[_OVERRIDES] = json.loads(v[_OVERRIDES]) if v[_OVERRIDES] else {}
        v[_VIA_DAEMON] = bool(v[_VIA_DAEMON])
        return cls(*v)


class RunRow(msgspec.Struct, frozen=True):
    """One attempt of one configuration of a sweep, as journaled."""

    id: str
    sweep_id: str
    idx: int
    config_hash: str | None
    params: dict[str, Any]
    argv: list[str]
    state: str
    reason: str | None
    exit_code: int | None
    attempt: int
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    run_dir: str | None
    pid: int | None
    pid_start: int | None
    params_hash: str | None

    @classmethod
    def from_db(cls, values: tuple[Any, ...]) -> RunRow:
        """From the columns in :data:`RUN_COLUMNS` order."""
        v = list(values)
        v[_PARAMS] = _json(v[_PARAMS]) if v[_PARAMS] else {}
        v[_ARGV] = _json(v[_ARGV]) if v[_ARGV] else []
        return cls(*v)


def _json(text: str) -> Any:
    """JSON text decoded by msgspec (several times faster: ``show`` decodes two per run),
    or by :mod:`json` when msgspec refuses it (``NaN`` and ``Infinity``, which
    :func:`json.dumps` writes)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


class OpenMappingRow(msgspec.Struct, frozen=True):
    """A sweep whose mapping was open (the daemon's ask/tell): the configurations added to it,
    in index order, and whether it was closed."""

    closed: bool
    values: list[dict[str, Any]]


class SuggestionRow(msgspec.Struct, frozen=True):
    """One suggestion of an adaptive search, and the newest run made of it (None: none)."""

    index: int
    params: dict[str, Any]
    place: dict[str, Any]
    resumes: int | None
    run_id: str | None


class CleanupRow(msgspec.Struct, frozen=True):
    """A ``termination.ttl`` removal that came due."""

    run_id: str
    path: str


_TAGS, _OVERRIDES, _VIA_DAEMON = (
    SweepRow.__struct_fields__.index(name) for name in ("tags", "overrides", "via_daemon")
)
_PARAMS, _ARGV = (RunRow.__struct_fields__.index(name) for name in ("params", "argv"))
#: The ``sweeps`` columns, in :class:`SweepRow` order (for ``SELECT``).
SWEEP_COLUMNS = ", ".join(SweepRow.__struct_fields__)
#: The ``runs`` columns, in :class:`RunRow` order (for ``SELECT``).
RUN_COLUMNS = ", ".join(RunRow.__struct_fields__)
