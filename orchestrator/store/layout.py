"""Where things live under the orchestrator home folder.

HOME/journal.sqlite             the journal (WAL)
HOME/runs/<run uuid>/           a run's context (``globals.context_path``,
                                ``globals.run_artifacts_path``)
    stdout.log  stderr.log      its complete output, byte for byte; each created at the
                                first byte of its stream (a silent run has neither)
    artifacts/                  ``globals.artifacts_path`` and ``store_path`` (git init clones
                                land here; ``termination.ttl`` removes it)
    outputs/                    ``globals.run_outputs_path`` (``ORCHESTRATOR_OUTPUTS_PATH``)
HOME/exit_status/<pid>-<start>.jsonl
                                the exit statuses of the runs of one orchestrator process
                                (pid, process start time), appended by its run supervisor
                                the moment each exits (recovery trusts them: a run that
                                succeeded never reruns); see ``executors.exit_status``
HOME/cache/git/                 clones of init repositories, one per url and revision
HOME/cache/entries.sqlite       the run cache's entries
HOME/daemon/                    the daemon's private folder (0700): ``daemon.json`` (socket,
                                port, token; 0600), ``daemon.lock``, ``daemon.sock``

A home folder the orchestrator creates is private (0700), and so are the journal (0600, its
WAL files inherit that), ``runs/``, ``cache/`` and ``exit_status/`` (0700; its files 0600)
whenever they are created; a folder that already exists keeps its mode (it may be the user's,
shared on purpose).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from orchestrator.exceptions import NotFoundError, StoreError

__all__ = [
    "RunLayout",
    "daemon_dir",
    "daemon_info_path",
    "default_home",
    "ensure_home",
    "existing_journal",
    "exit_status_path",
    "git_cache_dir",
    "journal_path",
    "private_dir",
    "run_paths",
]


def default_home() -> Path:
    return Path(os.environ.get("ORCHESTRATOR_HOME") or ".orchestrator").absolute()


def journal_path(home: Path) -> Path:
    return home / "journal.sqlite"


def existing_journal(home: Path) -> Path:
    """The journal of ``home``, which must exist: commands about past sweeps (``resume``,
    ``rerun``) create nothing where none ran (NotFoundError, one line)."""
    path = journal_path(home)
    if not path.is_file():
        raise NotFoundError(f"no journal in {home} (run a sweep first, or pass --home)")
    return path


def git_cache_dir(home: Path) -> Path:
    return home / "cache" / "git"


def exit_status_path(home: Path, pid: int, start: int | None) -> Path:
    """The exit-status file of the runs of orchestrator process ``pid`` (started at ``start``,
    None where that is unknown) under ``home``."""
    return home / "exit_status" / f"{pid}-{start or 0}.jsonl"


def sweep_dir(home: Path, sweep_id: str) -> Path:
    """A sweep's own files (an iterative search's tuner runs), beside its runs' folders."""
    return home / "sweeps" / sweep_id


def daemon_dir(home: Path) -> Path:
    """The daemon's private folder: its lock, token file and (usually) socket."""
    return home / "daemon"


def daemon_info_path(home: Path) -> Path:
    """``daemon.json``: the running daemon's pid, socket, and for TCP its port and token."""
    return daemon_dir(home) / "daemon.json"


def ensure_home(home: Path) -> Path:
    """Create ``home`` private (0700) if it does not exist; an existing folder keeps its mode.

    Whatever the folder's mode, a journal, ``runs/`` or ``cache/`` created here is private: the
    journal holds every run's argv and env, ``runs/`` every log, ``cache/`` outputs and clones.
    Best effort: what cannot be created here is reported, in one line, by whoever opens it
    next (the journal).
    """
    with contextlib.suppress(OSError):
        home.mkdir(mode=0o700, parents=True)
        os.chmod(home, 0o700)  # ours, just made: the umask may have taken bits off
    with contextlib.suppress(OSError):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        os.close(os.open(journal_path(home), flags, 0o600))  # empty: a new SQLite database
    for private in ("runs", "cache"):
        with contextlib.suppress(OSError):
            (home / private).mkdir(mode=0o700)
    return home


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can enter: created 0700 when missing; refused (a
    one-line StoreError) when it is a symlink, not a folder, someone else's, or open to the
    group or others. Never chmods an existing folder."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise StoreError(f"cannot check {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(f"refusing {path}: it is a symbolic link, not a private folder")
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"refusing {path}: it is not a folder")
    if info.st_uid != os.getuid():
        raise StoreError(f"refusing {path}: it belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise StoreError(
            f"refusing {path}: mode {mode:o} lets others in (expected 700); "
            "fix it or remove the folder"
        )
    return path


T = TypeVar("T")


class _once(Generic[T]):
    """``functools.cached_property`` without its lock (Python 3.11 takes one per first use
    of each instance's value): a run's paths are asked for a few times per run, from the
    event loop."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object, owner: type | None = None) -> T | _once[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(frozen=True)
class RunLayout:
    home: Path
    run_uuid: str

    @_once
    def run_dir(self) -> Path:
        return self.home.joinpath("runs", self.run_uuid)  # one path made, not two

    @_once
    def stdout(self) -> Path:
        return self.run_dir / "stdout.log"

    @_once
    def stderr(self) -> Path:
        return self.run_dir / "stderr.log"

    @_once
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"

    @_once
    def outputs(self) -> Path:
        return self.run_dir / "outputs"

    def template_paths(self) -> dict[str, str]:
        """The local paths behind ``globals.*``."""
        return {
            "context_path": str(self.run_dir),
            "artifacts_path": str(self.artifacts),
            "run_artifacts_path": str(self.run_dir),
            "run_outputs_path": str(self.outputs),
            "run_relative_outputs_path": "outputs",
            "store_path": str(self.artifacts),
        }


def run_paths(home: Path) -> Callable[[str], dict[str, str]]:
    """Each run's ``globals.*`` paths under ``home``, by run uuid (for ``compile_plan``)."""

    def paths(run_uuid: str) -> dict[str, str]:
        return RunLayout(home, run_uuid).template_paths()

    return paths
