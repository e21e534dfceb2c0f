"""``init`` sections run before a job starts: ``git`` clones (cached) and ``file`` contents."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import anyio

from orchestrator.exceptions import ExecutorError
from orchestrator.spec import models as m

__all__ = ["prepare_init"]

_locks: dict[str, anyio.Lock] = {}


def _repo_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".git") or "repo"


async def _git(*args: str, cwd: Path | None = None) -> None:
    result = await anyio.run_process(
        ["git", *args], cwd=cwd, check=False, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise ExecutorError(f"git {args[0]} failed: {detail[-1] if detail else result.returncode}")


async def _clone(git: m.GitInit, artifacts: Path, cache_root: Path, path: str | None) -> None:
    if not git.url:
        raise ExecutorError("init git: a url is required locally")
    key = hashlib.sha256(f"{git.url}\0{git.revision or ''}".encode()).hexdigest()[:16]
    cached = cache_root / key
    lock = _locks.setdefault(key, anyio.Lock())
    async with lock:
        if not await anyio.Path(cached / ".git").exists():
            await anyio.Path(cache_root).mkdir(parents=True, exist_ok=True)
            tmp = cache_root / f"{key}.partial-{os.getpid()}"
            await _git("clone", "--quiet", *(git.flags or []), git.url, str(tmp))
            if git.revision:
                await _git("checkout", "--quiet", git.revision, cwd=tmp)
            await anyio.Path(tmp).rename(cached)
    dest = Path(path) if path and os.path.isabs(path) else artifacts / (path or _repo_name(git.url))
    await anyio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
    await _git("clone", "--quiet", "--shared", str(cached), str(dest))
    if git.revision:
        await _git("checkout", "--quiet", git.revision, cwd=dest)


async def _write_file(file: m.FileInit, artifacts: Path, path: str | None) -> None:
    folder = Path(path) if path and os.path.isabs(path) else artifacts / (path or "")
    target = folder / (file.filename or "file")
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    await anyio.Path(target).write_text(file.content)
    if file.chmod:
        try:
            await anyio.Path(target).chmod(int(file.chmod, 8))
        except ValueError:
            raise ExecutorError(f"init file: chmod {file.chmod!r} is not an octal mode") from None


async def prepare_init(inits: list[m.Init], artifacts: Path, cache_root: Path) -> None:
    """Run every init entry in order; raise ExecutorError with a clear reason on failure."""
    for entry in inits:
        if entry.git is not None:
            try:
                await _clone(entry.git, artifacts, cache_root, entry.path)
            except FileNotFoundError:
                raise ExecutorError("init git: git is not installed") from None
            except (OSError, subprocess.SubprocessError) as exc:
                raise ExecutorError(f"init git: {exc}") from None
        elif entry.file is not None:
            await _write_file(entry.file, artifacts, entry.path)
