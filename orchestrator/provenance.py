"""Where a sweep ran, collected once when it starts: code (git commit, tree, dirty flag and
the uncommitted diff), interpreter, installed distributions, host, user, platform, working
folder, and the environment its runs start from, secrets redacted.

Standard library only and bounded: every ``git`` call has a timeout, a diff over
:data:`MAX_DIFF` bytes is cut (and says so), and nothing here fails a sweep: what cannot be
found is recorded as unknown (None)."""

from __future__ import annotations

import fnmatch
import getpass
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_DIFF",
    "REDACTED",
    "SECRET_NAMES",
    "Provenance",
    "collect",
    "content_hash",
    "redacted",
]

#: Names of environment variables whose values are never recorded (``fnmatch`` patterns,
#: case-insensitive); ``ORCHESTRATOR_SECRET_NAMES`` (comma-separated) replaces them.
SECRET_NAMES = ("*TOKEN*", "*SECRET*", "*PASSWORD*", "*KEY*", "*CREDENTIAL*")
REDACTED = "<redacted>"
#: The most of an uncommitted diff that is kept.
MAX_DIFF = 10 << 20
GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Provenance:
    """What a sweep's runs ran with. ``diff``, ``packages`` and ``environment`` are large
    and repeat between sweeps: the journal stores each once, by :func:`content_hash`."""

    git_commit: str | None
    git_tree: str | None
    git_dirty: bool | None
    #: ``git diff HEAD`` of tracked files plus the names of untracked ones (None: clean or
    #: not a repository).
    diff: str | None
    python: str
    python_version: str
    #: ``name==version`` of every installed distribution, sorted, one per line.
    packages: str
    host: str
    user: str | None
    platform: str
    cwd: str
    #: The environment every run starts from (``ORCHESTRATOR_*`` and the spec's ``env``
    #: come on top, per run), secret-looking values redacted.
    environment: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret_patterns(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    given = environ.get("ORCHESTRATOR_SECRET_NAMES")
    if given is None:
        return SECRET_NAMES
    return tuple(p.strip() for p in given.split(",") if p.strip())


def redacted(env: Mapping[str, str], patterns: tuple[str, ...] = SECRET_NAMES) -> dict[str, str]:
    """``env`` with the value of every name matching one of ``patterns`` replaced."""
    return {
        name: REDACTED if any(fnmatch.fnmatch(name.upper(), p.upper()) for p in patterns) else v
        for name, v in env.items()
    }


def collect(folder: Path, environment: Mapping[str, str]) -> Provenance:
    """The provenance of a sweep whose spec (and code) lives in ``folder``, whose runs start
    from ``environment``. Blocking (git, the installed distributions): call it in a thread."""
    commit = _git(folder, "rev-parse", "HEAD")
    tree = _git(folder, "rev-parse", "HEAD^{tree}") if commit else None
    status = _git(folder, "status", "--porcelain") if commit else None
    dirty = None if status is None else bool(status.strip())
    diff = None
    if dirty:
        tracked = _git(folder, "diff", "HEAD", limit=MAX_DIFF) or ""
        untracked = _git(folder, "ls-files", "--others", "--exclude-standard") or ""
        diff = tracked + "".join(f"untracked: {name}\n" for name in untracked.splitlines())
    return Provenance(
        git_commit=commit,
        git_tree=tree,
        git_dirty=dirty,
        diff=diff,
        python=sys.executable,
        python_version=platform.python_version(),
        packages=_packages(),
        host=socket.gethostname(),
        user=_user(),
        platform=platform.platform(),
        cwd=os.getcwd(),
        environment=redacted(environment, secret_patterns(environment)),
    )


def _git(folder: Path, *args: str, limit: int = 1 << 20) -> str | None:
    """``git -C folder ARGS``'s output (at most ``limit`` bytes, cut with a note), None when
    git is missing, fails, or takes over :data:`GIT_TIMEOUT_S`."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    text = done.stdout[:limit].decode(errors="replace")
    if len(done.stdout) > limit:
        text += f"\n[cut at {limit} bytes of {len(done.stdout)}]\n"
    return text.strip() if args[0] == "rev-parse" else text


def _packages() -> str:
    """Every installed distribution, ``name==version``, sorted; read again only when a folder
    on ``sys.path`` changed (installing, upgrading or removing a distribution adds or removes
    an entry there): the scan costs ~0.1 s, and a daemon starts many sweeps."""
    global _listed
    seen = _path_state()
    if _listed is not None and _listed[0] == seen:
        return _listed[1]
    found = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    text = "\n".join(sorted(found, key=str.lower))
    _listed = (seen, text)
    return text


#: The last package list, with the state of ``sys.path`` it was read in.
_listed: tuple[tuple[tuple[str, int, int], ...], str] | None = None


def _path_state() -> tuple[tuple[str, int, int], ...]:
    """Each ``sys.path`` folder's modification time and link count (a new ``*.dist-info``
    folder adds a link even within one tick of a coarse clock)."""
    state = []
    for entry in sys.path:
        try:
            info = os.stat(entry or ".")
            state.append((entry, info.st_mtime_ns, info.st_nlink))
        except OSError:
            state.append((entry, -1, -1))
    return tuple(state)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
