"""The part of an invocation's provenance known at once (journaled before its first run), and
the journal's reading of records with and without it collected."""

from __future__ import annotations

import os
import pwd
import socket
import sys
from pathlib import Path

from orchestrator import provenance
from orchestrator.provenance import REDACTED, known_at_once
from orchestrator.store.journal import Journal


def test_what_is_known_at_once_is_marked_not_collected() -> None:
    made = known_at_once({"MY_API_TOKEN": "s3cr3t", "MODE": "fast", "USER": "alice"})
    assert made["collected"] is False
    assert made["python"] == sys.executable and made["host"] == socket.gethostname()
    assert made["user"] == "alice"
    assert made["environment"] == {"MY_API_TOKEN": REDACTED, "MODE": "fast", "USER": "alice"}
    assert all(made[name] is None for name in ("git_commit", "diff", "packages", "platform"))


def test_the_user_is_read_as_getuser_reads_it() -> None:
    assert provenance._user({"USER": "bob", "LOGNAME": "carol"}) == "carol"
    assert provenance._user({"USERNAME": "dave", "USER": ""}) == "dave"
    assert provenance._user({"PATH": "/bin"}) == pwd.getpwuid(os.getuid()).pw_name


def test_the_collected_record_replaces_the_one_known_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        env = {"A": "1"}
        journal.add_provenance("s1", known_at_once(env), at=1.0)
        journal.flush_sync()
        partial = journal.provenance_at("s1", 5.0)
        assert partial is not None and partial["collected"] is False and partial["at"] == 1.0
        journal.add_provenance("s1", {"host": "h", "environment": dict(env)}, at=1.0)
        journal.add_provenance("s1", {"host": "h", "environment": {"A": "2"}}, at=2.0)
        journal.flush_sync()
        first, second = journal.provenance_at("s1", 1.5), journal.provenance_at("s1", 5.0)
        assert first is not None and first["collected"] is True  # no field: collected
        assert first["environment"] == {"A": "1"}
        assert first["environment_hash"] == partial["environment_hash"]
        assert second is not None and second["environment"] == {"A": "2"}
        assert second["environment_hash"] != first["environment_hash"]
    finally:
        journal.close()
