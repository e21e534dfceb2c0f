"""Which argv items the cache key looks at (issue 14): an item naming no entry of a working
folder left alone is not looked at again run after run, yet a file that appears there, or
behind a symbolic link, is still seen by the next run's key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from orchestrator_plugins import cache_argv  # type: ignore[import-not-found]
from orchestrator_plugins.cache import RunCache, _SweepMemo  # type: ignore[import-not-found]
from orchestrator_plugins.cache_argv import cannot_name_a_file  # type: ignore[import-not-found]

pytestmark = pytest.mark.anyio
ARGV = ["train.py", "--lr", "0.1", "--optimizer", "adam", "model.pt"]


def quiet(folder: Path) -> None:
    """Make ``folder`` look left alone for a minute (a project folder during a sweep)."""
    past = time.time() - 60
    os.utime(folder, (past, past))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "data").mkdir()
    quiet(tmp_path)
    return tmp_path


class Looks:
    """Counts the ``stat`` calls on paths inside one folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.paths = str(folder), list[str]()
        real = os.stat

        def spy(path: object, *args: object, **kwargs: object) -> os.stat_result:
            if str(path).startswith(self.folder + os.sep):
                self.paths.append(os.path.basename(str(path)))
            return real(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "stat", spy)

    def take(self) -> list[str]:
        paths, self.paths = self.paths, []
        return paths


async def parts(memo: _SweepMemo, folder: Path, argv: list[str] = ARGV) -> dict[str, str]:
    parts: dict[str, str] = await RunCache()._file_parts(argv, str(folder), memo)
    return parts


async def test_items_naming_nothing_are_not_looked_at_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks, memo = Looks(folder, monkeypatch), _SweepMemo()
    first = await parts(memo, folder)
    assert list(first) == ["code:file train.py"]
    assert set(looks.take()) == {"train.py"}, "only the entry that may be a file"
    for value in ("0.2", "0.3"):  # a param's value differs every run: not there either
        argv = [value if a == "0.1" else a for a in ARGV]
        assert await parts(memo, folder, argv) == first
    assert looks.take() == [], "the file is read once per sweep; the rest named nothing"


async def test_a_file_that_appears_between_runs_is_in_the_next_key(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo = _SweepMemo()
    assert "code:file model.pt" not in await parts(memo, folder)
    (folder / "model.pt").write_bytes(b"weights")  # the folder changes with it
    assert "code:file model.pt" in await parts(memo, folder)


async def test_a_folder_changed_moments_ago_is_not_trusted(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry made in the same clock tick as the change before it may leave the folder's
    mtime as it was: until the folder has been left alone a while, items are looked at."""
    (folder / "notes.txt").write_text("now")
    looks, memo = Looks(folder, monkeypatch), _SweepMemo()
    await parts(memo, folder)
    await parts(memo, folder)
    assert looks.take().count("adam") == 2


async def test_a_link_whose_target_appears_elsewhere_is_seen(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (folder / "model.pt").symlink_to(elsewhere / "model.pt")  # dangling for now
    quiet(folder)
    memo = _SweepMemo()
    assert "code:file model.pt" not in await parts(memo, folder)
    (elsewhere / "model.pt").write_bytes(b"weights")  # the folder itself does not change
    assert "code:file model.pt" in await parts(memo, folder)


async def test_names_are_compared_as_a_case_insensitive_file_system_would(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Train.py`` may be the file ``train.py`` names (macOS, Windows): it is looked at."""
    looks, memo = Looks(folder, monkeypatch), _SweepMemo()
    await parts(memo, folder, ["TRAIN.PY", "Adam"])
    assert looks.take() == ["TRAIN.PY"]


async def test_a_folder_too_big_to_list_has_its_items_looked_at(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_argv, "LIST_MAX", 1)
    looks, memo = Looks(folder, monkeypatch), _SweepMemo()
    await parts(memo, folder)
    await parts(memo, folder)
    assert looks.take().count("adam") == 2


async def test_text_that_names_no_file(folder: Path) -> None:
    for item in ("", ".", "..", "data/", "a/..", "x\0y"):
        assert cannot_name_a_file(item), item
    for item in ("adam", "0.1", "--lr", "data", "a/b", "/bin/true"):
        assert not cannot_name_a_file(item), item
    # A NUL byte in a param's value is no path: no part, where os.stat used to raise.
    assert await parts(_SweepMemo(), folder, ["x\0y", "train.py"]) == {
        "code:file train.py": (await parts(_SweepMemo(), folder))["code:file train.py"]
    }
