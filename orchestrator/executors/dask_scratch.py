"""A Dask run on a worker that does not share the orchestrator's home: a scratch folder there.

Where a worker does not see the run's folder (or the cluster is told to act as if: the dask
config ``orchestrator.scratch``), the attempt runs in a folder of its own under the worker's
local directory, removed once it ended:

- its ``init`` entries (``git`` clones, ``file`` contents, as :mod:`orchestrator.executors.init`
  does them locally) are carried out there, on the worker: file contents travel inline in the
  task, at most ``init_max_bytes`` in all (:func:`inline_init`);
- the home's run folder is replaced by the scratch one in the command's arguments and
  environment (``ORCHESTRATOR_RUN_DIR``, ``ORCHESTRATOR_OUTPUTS_PATH``, the
  ``globals.*_path`` the spec rendered); the working folder is mapped the same way when it is
  inside the run's folder, kept when the worker has it, else is the scratch run folder;
- output lines come back as for any Dask run; at the end, ``outputs/`` is packed
  (:func:`pack_outputs`: regular files and folders, no symbolic link followed or shipped, at
  most ``max_files`` entries and ``max_bytes`` bytes) into the task's result, and the
  orchestrator writes it into the run's folder in its home (:func:`unpack_outputs`: every
  path checked to stay inside ``outputs/``, no link followed).

The worker half (:func:`prepare`, :func:`pack_outputs`) is imported on the worker only for
such runs; the orchestrator half (:func:`inline_init`, :func:`unpack_outputs`) only here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OUTPUTS_LIMIT",
    "Scratch",
    "inline_init",
    "pack_outputs",
    "prepare",
    "unpack_outputs",
]

#: The reason of an attempt whose ``outputs/`` could not be shipped back.
OUTPUTS_LIMIT = "outputs_not_shipped"
#: One entry of a packed ``outputs/``: its path relative to it (``/``-separated), its mode,
#: its bytes (None: a folder).
Entry = tuple[str, int, bytes | None]
#: Init entries run one at a time per worker process: ``init``'s clone cache and its locks
#: are per process, and each attempt runs init on an event loop of its own.
_INIT_LOCK = threading.Lock()


# ---------------------------------------------------------------------- the orchestrator's half
def inline_init(inits: list[Any], max_bytes: int) -> tuple[list[Any], str | None]:
    """The init entries a worker runs (git and file: the ones ``init`` does locally), and the
    reason they cannot go (their file contents over ``max_bytes``), else None."""
    wanted = [entry for entry in inits if entry.git is not None or entry.file is not None]
    size = sum(len(entry.file.content.encode()) for entry in wanted if entry.file is not None)
    if size > max_bytes:
        return [], (
            f"init_too_large: the run's init files come to {size:,} bytes, more than the "
            f"{max_bytes:,} a run takes to a Dask worker that does not share the home "
            "(dask config orchestrator.init-max-bytes)"
        )
    return wanted, None


def _inside(parts: list[str]) -> bool:
    return bool(parts) and all(p not in ("", ".", "..") and "\x00" not in p for p in parts)


def unpack_outputs(outputs: Path, entries: list[Entry]) -> None:
    """Write a worker's packed ``outputs/`` into ``outputs`` (the run's folder in this home):
    every path relative and inside it, folders made without following a link, files opened
    with ``O_NOFOLLOW``, no setuid, setgid, sticky or world-writable mode. OSError on failure,
    ValueError for a path that would leave ``outputs``."""
    top = outputs.resolve()
    for name, mode, data in entries:
        parts = name.split("/")
        if not _inside(parts):
            raise ValueError(f"a shipped output path leaves outputs/: {name!r}")
        target = top.joinpath(*parts)
        folder = target if data is None else target.parent
        _make_folder(top, folder)
        if data is None:
            continue
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, mode & 0o755)
            f.write(data)


def _make_folder(top: Path, folder: Path) -> None:
    """``folder`` and the folders above it up to ``top``, none of them a link."""
    current = top
    for part in folder.relative_to(top).parts:
        current = current / part
        with contextlib.suppress(FileExistsError):
            os.mkdir(current, 0o755)
        if not stat.S_ISDIR(os.lstat(current).st_mode):
            raise ValueError(f"a shipped output folder is not a folder here: {current}")


# ---------------------------------------------------------------------- the worker's half
@dataclass
class Scratch:
    """Where an attempt runs on a worker that does not share the home."""

    #: The attempt's own folder (removed at its end) and the run folder inside it.
    root: str
    run_dir: str
    argv: list[str]
    env: dict[str, str]
    cwd: str

    @property
    def outputs(self) -> str:
        return os.path.join(self.run_dir, "outputs")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _mapped(value: str, home_run_dir: str, run_dir: str) -> str:
    return value.replace(home_run_dir, run_dir) if home_run_dir in value else value


def prepare(spec: dict[str, Any], local_directory: str) -> Scratch:
    """Make the attempt's scratch folder under ``local_directory``, run its init entries there,
    map the home's run folder onto it; raises ExecutorError (one line) when init fails."""
    root = os.path.join(local_directory, "orchestrator-runs", str(spec["key"]))
    run_dir = os.path.join(root, "run")
    os.makedirs(os.path.join(run_dir, "outputs"), exist_ok=True)
    home_run_dir = str(spec["run_dir"])
    cwd = str(spec["cwd"])
    if cwd == home_run_dir or cwd.startswith(home_run_dir + os.sep):
        cwd = _mapped(cwd, home_run_dir, run_dir)
    elif not os.path.isdir(cwd):
        cwd = run_dir
    scratch = Scratch(
        root=root,
        run_dir=run_dir,
        argv=[_mapped(str(arg), home_run_dir, run_dir) for arg in spec["argv"]],
        env={k: _mapped(str(v), home_run_dir, run_dir) for k, v in spec["env"].items()},
        cwd=cwd,
    )
    if spec.get("init"):
        try:
            _run_init(spec["init"], run_dir, os.path.join(local_directory, "orchestrator-git"))
        except BaseException:
            scratch.remove()
            raise
    return scratch


def _run_init(inits: list[Any], run_dir: str, cache: str) -> None:
    import anyio

    from orchestrator.executors.init import prepare_init

    root = Path(run_dir)
    with _INIT_LOCK:
        anyio.run(lambda: prepare_init(inits, root / "artifacts", Path(cache), run_dir=root))


def pack_outputs(outputs: str, max_files: int, max_bytes: int) -> tuple[list[Entry], str | None]:
    """``outputs`` as entries (folders first, then their contents), symbolic links and other
    non-regular files left out, never followed; or the reason it is over the limits."""
    entries: list[Entry] = []
    size = 0
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(outputs, relative) if relative else outputs) as found:
            items = sorted(found, key=lambda e: e.name)
        for item in items:
            name = f"{relative}/{item.name}" if relative else item.name
            info = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                entries.append((name, info.st_mode, None))
                pending.append(name)
            elif stat.S_ISREG(info.st_mode):
                data = _read(item.path, max_bytes - size + 1)
                size += len(data)
                if size > max_bytes:
                    return [], _too_large(f"more than {max_bytes:,} bytes", "max-bytes")
                entries.append((name, info.st_mode, data))
            else:
                continue
            if len(entries) > max_files:
                return [], _too_large(f"more than {max_files:,} files and folders", "max-files")
    return entries, None


def _too_large(what: str, setting: str) -> str:
    return (
        f"{OUTPUTS_LIMIT}: outputs/ holds {what}, the most a Dask worker that does not share "
        f"the home ships back (dask config orchestrator.outputs-{setting})"
    )


def _read(path: str, most: int) -> bytes:
    """At most ``most`` bytes of a file (never through a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(most)
