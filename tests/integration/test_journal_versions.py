"""The journal has a version: a home written before versioning opens and is migrated (nothing
it recorded is lost), and one written by a newer orchestrator is refused in one line, untouched."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from orchestrator.store.schema import SCHEMA_VERSION
from tests.conftest import CliResult
from tests.integration.test_search_resume import COMPONENT, SPEC

OLD = Path(__file__).resolve().parents[1] / "journals" / "before-versioning.sqlite"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    shutil.copyfile(OLD, home / "journal.sqlite")
    return home


def _version(journal: Path) -> int:
    with sqlite3.connect(journal) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_journal_from_before_versioning_is_migrated_and_keeps_its_history(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = _home(tmp_path)
    assert _version(home / "journal.sqlite") == 0
    shown = cli("show", "last", "--home", str(home), "--json")
    assert shown.code == 0, shown.err
    body = json.loads(shown.out)
    assert body["state"] == "failed"
    runs = sorted(body["runs"], key=lambda r: r["index"])
    assert [(r["params"]["n"], r["state"]) for r in runs] == [
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "failed"),
    ]
    assert [r["outputs"]["loss"] for r in runs] == [1.0, 0.5, 1 / 3]
    assert _version(home / "journal.sqlite") == SCHEMA_VERSION
    one = json.loads(cli("show", "last:2", "--home", str(home), "--json").out)
    assert one["state"] == "failed" and one["provenance"] is None  # recorded before it was
    assert "not recorded" in cli("show", "last:2", "--home", str(home)).out

    # What this version added works in the migrated home: an adaptive search journals its
    # suggestions there.
    spec = tmp_path / "hb.yaml"
    spec.write_text(SPEC.format(python=sys.executable, component=COMPONENT, events=tmp_path / "x"))
    assert cli("run", str(spec), "--home", str(home)).code == 0
    listed = json.loads(cli("ls", "--home", str(home), "--json").out)
    assert [s["state"] for s in listed] == ["succeeded", "failed"]


def test_a_journal_from_a_newer_orchestrator_is_refused_untouched(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = _home(tmp_path)
    journal = home / "journal.sqlite"
    with sqlite3.connect(journal) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = journal.read_bytes()
    for command in (["ls"], ["show", "last"]):
        result = cli(*command, "--home", str(home))
        assert result.code == 2
        assert result.err.count("\n") == 1
        assert "written by a newer orchestrator" in result.err and str(journal) in result.err
    assert journal.read_bytes() == before


def test_processes_opening_an_old_journal_together_migrate_it_once(tmp_path: Path) -> None:
    """Each migration takes the write lock and looks at the version again under it: four
    connections opening the same old journal at once all get a migrated one."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.store.schema import connect

    journal = _home(tmp_path) / "journal.sqlite"

    def open_it(_: int) -> int:
        conn = connect(journal, schema=True)
        try:
            return _version_of(conn)
        finally:
            conn.close()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_it, range(4))) == [SCHEMA_VERSION] * 4
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 3


def _version_of(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_version_3_journal_gains_pipelines_and_placements_keeping_its_rows(
    tmp_path: Path,
) -> None:
    """Version 4 adds columns to ``sweeps``: SQLite's ALTER TABLE runs once, in the migration's
    transaction, and a journal that already has a column (from a release before versioning)
    is brought up too."""
    from orchestrator.store.schema import MIGRATIONS, connect

    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:
        for version in (1, 2, 3):
            db.executescript(MIGRATIONS[version])
        db.execute("INSERT INTO sweeps (id, state) VALUES ('s1', 'succeeded')")
        db.execute("PRAGMA user_version = 3")
    connect(path, schema=True).close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id, parent_id, node FROM sweeps").fetchall() == [
            ("s1", None, None)
        ]
        assert db.execute("SELECT count(*) FROM placements").fetchone() == (0,)
        db.execute("PRAGMA user_version = 0")  # columns already there, no version
    connect(path, schema=True).close()
    assert _version(path) == SCHEMA_VERSION
