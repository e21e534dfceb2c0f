"""A small git repository for tests of what a sweep records about its code."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["committed_repo", "git"]


def git(repo: Path, *args: str) -> None:
    """``git -C repo ARGS`` as a test user (no global configuration needed)."""
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def committed_repo(folder: Path, files: Mapping[str, str]) -> Path:
    """A new repository in ``folder`` with ``files`` (name: text) in its first commit."""
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "first")
    return folder
