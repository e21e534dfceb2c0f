"""What provenance collects, without a sweep: redaction, the package list and its refresh."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from orchestrator.provenance import REDACTED, _packages, collect, redacted, secret_patterns


def test_secret_looking_names_are_redacted_whatever_their_case() -> None:
    env = {"GITHUB_TOKEN": "a", "aws_secret_access_key": "b", "DB_Password": "c", "PATH": "/bin"}
    assert redacted(env) == {
        "GITHUB_TOKEN": REDACTED,
        "aws_secret_access_key": REDACTED,
        "DB_Password": REDACTED,
        "PATH": "/bin",
    }


def test_the_patterns_are_configurable() -> None:
    patterns = secret_patterns({"ORCHESTRATOR_SECRET_NAMES": "MY_*, *_PIN"})
    assert patterns == ("MY_*", "*_PIN")
    assert redacted({"MY_VAR": "x", "CARD_PIN": "1", "API_TOKEN": "t"}, patterns) == {
        "MY_VAR": REDACTED,
        "CARD_PIN": REDACTED,
        "API_TOKEN": "t",
    }


def test_a_distribution_installed_meanwhile_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is read again when a folder on sys.path changes (a pip install adds an entry),
    not on every sweep."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = _packages()
    assert _packages() is before  # nothing changed: the same list, not read again
    dist = site / "newpkg-3.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: newpkg\nVersion: 3.1\n")
    assert "newpkg==3.1" in _packages().splitlines()


def test_the_package_list_reads_what_the_metadata_parser_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names and versions come from the metadata files' header lines, read by hand (the
    e-mail parser took most of a sweep's start-up): the same list as the parser's, for every
    installed distribution, a PKG-INFO one and a long description after the headers."""
    site = tmp_path / "site"
    egg = site / "eggy.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Eggy_Pkg\nVersion: 0.9b1\n")
    dist = site / "described-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: described\nVersion: 1.0\nSummary: x\n\n"
        "Name: not-a-header\nVersion: 9\n"
    )
    monkeypatch.syspath_prepend(str(site))
    parsed = {
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    listed = set(_packages().splitlines())
    assert listed == parsed
    assert {"Eggy_Pkg==0.9b1", "described==1.0"} <= listed


def test_a_removed_working_folder_is_no_error_in_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder the orchestrator was started in may be removed while it runs (a temporary
    # checkout): the record says the folder is unknown, as the part known at once does,
    # instead of being replaced by an error record.
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    record = collect(tmp_path, {"PATH": "/bin"}).as_dict()
    assert record["cwd"] is None
    assert "error" not in record
    assert record["python"]
