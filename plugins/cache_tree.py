"""The code a run executes, by content: the git tree of the repository around its working folder.

The tree is what ``git write-tree`` would record if everything were committed now: ``HEAD``'s
tree plus staged, unstaged and untracked (not ignored) changes, the way ``git add -A`` sees
them. The whole repository counts, not only the working folder (a run may import code from
anywhere in it); history does not (a new commit of the same content keeps the tree). Some
files are left out because their content is in the cache key another way, or never matters:

* the polyaxonfile(s) of the sweep and the orchestrator's home folder (given by the caller);
* whatever a ``.orchestratorignore`` file names (gitignore syntax, one at the repository root
  or in any folder, like ``.gitignore``).

Nothing in the user's repository changes: git works on a copy of its index (whose stat data
spares re-hashing unchanged files) and writes new objects to a temporary folder that borrows
the repository's objects (``GIT_ALTERNATE_OBJECT_DIRECTORIES``). The whole computation is
bounded by :data:`GIT_TIMEOUT_S`; when git fails or is too slow the answer is a unique
``unavailable`` value, so the run misses the cache rather than reuse a stale result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import anyio

__all__ = ["GIT_TIMEOUT_S", "IGNORE_FILE", "content_tree"]

#: Seconds the git commands of one working folder may take together (a hook call has 30).
GIT_TIMEOUT_S = 20.0
#: Names what the cache key leaves out, in gitignore syntax.
IGNORE_FILE = ".orchestratorignore"

# Settings that keep git from writing into the repository or trusting a cache of it.
_QUIET = (
    "-c",
    "core.splitIndex=false",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
)


class GitError(Exception):
    """A git command failed; its first line of stderr says why."""


async def content_tree(cwd: str | Path, leave_out: Iterable[Path] = ()) -> str:
    """The git tree id of the repository around ``cwd``, without ``leave_out`` (files or
    folders) and what ``.orchestratorignore`` names; ``""`` outside a repository (or without
    git); ``unavailable <nonce>: <why>`` when git failed or took too long."""
    try:
        top = await anyio.run_process(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, check=False, env=_plain_env()
        )
    except OSError:
        return ""  # no git, or the folder is missing: the argv files still cover the code
    if top.returncode != 0:
        return ""
    root = Path(os.fsdecode(top.stdout.rstrip(b"\n")))
    left = [p for p in (_inside(root, path) for path in leave_out) if p]
    try:
        with anyio.fail_after(GIT_TIMEOUT_S):
            return await _Tree(root, left).compute()
    except TimeoutError:
        why = f"git took longer than {GIT_TIMEOUT_S:g}s"
    except (GitError, OSError) as exc:
        why = str(exc) or type(exc).__name__
    return f"unavailable {uuid.uuid4().hex[:12]}: {why}"


def _plain_env() -> dict[str, str]:
    """The environment without an inherited index or object folder (ours are set per call)."""
    env = dict(os.environ)
    for name in ("GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"):
        env.pop(name, None)
    return env


def _inside(root: Path, path: Path) -> bytes | None:
    """``path`` relative to ``root`` as git names it (None: the root itself, or not inside)."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return os.fsencode(relative.as_posix()) if relative.parts else None


def _paths(output: bytes) -> list[bytes]:
    return [p for p in output.split(b"\0") if p]


def _nul(paths: list[bytes]) -> bytes:
    return b"\0".join(paths) + b"\0"


class _Tree:
    """One computation: the repository at ``root``, the paths to leave out (relative to
    ``root``)."""

    def __init__(self, root: Path, leave_out: list[bytes]) -> None:
        self.root = root
        self.leave_out = leave_out
        self.env = _plain_env()

    async def git(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = await anyio.run_process(
            ["git", *_QUIET, *args], cwd=self.root, env=self.env, input=stdin, check=False
        )
        if done.returncode != 0:
            first = (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[0]
            raise GitError(f"git {args[0]}: {first}")
        return done.stdout

    async def compute(self) -> str:
        where = await self.git("rev-parse", "--git-path", "index", "--git-path", "objects")
        index, objects = (self.root / os.fsdecode(p) for p in where.splitlines())
        with tempfile.TemporaryDirectory(prefix="orchestrator-tree-") as tmp:
            self.env = self.env | {
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
            }
            await anyio.to_thread.run_sync(_prepare, Path(tmp), index)
            await self.git("add", "--update")  # tracked files: modified and deleted
            tracked = _paths(await self.git("ls-files", "-z"))
            others = await self.git(
                "ls-files", "-z", "--others", "--exclude-standard", *self._excludes()
            )
            # An entry ending in "/" is a nested repository: not ours to hash.
            untracked = [p for p in _paths(others) if not p.endswith(b"/")]
            out = _Left(self.leave_out, await self._ignored([*tracked, *untracked]))
            removed = [p for p in tracked if out(p)]
            if removed:
                await self.git(
                    "update-index", "-z", "--force-remove", "--stdin", stdin=_nul(removed)
                )
            added = [p for p in untracked if not out(p)]
            if added:
                await self.git(
                    "update-index", "-z", "--add", "--remove", "--stdin", stdin=_nul(added)
                )
            return (await self.git("write-tree")).decode().strip()

    def _excludes(self) -> list[str]:
        """``--exclude`` patterns that keep ``ls-files`` out of left-out folders (the home)."""
        special = str.maketrans({c: "\\" + c for c in "\\*?[]!# "})
        return [f"--exclude=/{os.fsdecode(p).translate(special)}/" for p in self.leave_out]

    async def _ignored(self, paths: list[bytes]) -> set[bytes]:
        """What ``.orchestratorignore`` files name (folders end with ``/``); asked only when
        there is one."""
        name = IGNORE_FILE.encode()
        if not any(p == name or p.endswith(b"/" + name) for p in paths):
            return set()
        listed = await self.git(
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--ignored",
            "--directory",
            f"--exclude-per-directory={IGNORE_FILE}",
        )
        return set(_paths(listed))


def _prepare(tmp: Path, index: Path) -> None:
    """The temporary object folder (git takes a missing one for "no repository") and a copy
    of the index, whose stat data spares re-reading unchanged files."""
    (tmp / "objects").mkdir()
    if index.is_file():
        shutil.copyfile(index, tmp / "index")


class _Left:
    """Is a path left out: one of the given paths, or inside one of the given folders?"""

    def __init__(self, leave_out: list[bytes], dropped: set[bytes]) -> None:
        self.exact = set(leave_out) | {p for p in dropped if not p.endswith(b"/")}
        self.folders = {p.rstrip(b"/") for p in (*leave_out, *dropped)}

    def __call__(self, path: bytes) -> bool:
        if path in self.exact:
            return True
        parent = path
        while b"/" in parent:
            parent = parent.rsplit(b"/", 1)[0]
            if parent in self.folders:
                return True
        return False
