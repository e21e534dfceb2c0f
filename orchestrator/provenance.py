"""Where a sweep ran, collected once when it starts: code (git commit, tree, dirty flag and
the uncommitted diff), interpreter, installed distributions, host, user, platform, working
folder, and the environment its runs start from, secrets redacted.

Standard library only and bounded: every ``git`` call has a timeout, a diff over
:data:`MAX_DIFF` bytes is cut (and says so), and nothing here fails a sweep: what cannot be
found is recorded as unknown (None)."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_DIFF",
    "REDACTED",
    "SECRET_NAMES",
    "Provenance",
    "collect",
    "content_hash",
    "known_at_once",
    "redacted",
    "redacted_environment",
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
    cwd: str | None
    #: The environment every run starts from (``ORCHESTRATOR_*`` and the spec's ``env``
    #: come on top, per run), secret-looking values redacted.
    environment: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """A copy as a dict (its environment copied too). Not :func:`dataclasses.asdict`:
        its deep copy of every value cost a daemon submission more than the record did."""
        out = dict(vars(self))
        out["environment"] = dict(self.environment)
        return out


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret_patterns(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    given = environ.get("ORCHESTRATOR_SECRET_NAMES")
    if given is None:
        return SECRET_NAMES
    return tuple(p.strip() for p in given.split(",") if p.strip())


def redacted(env: Mapping[str, str], patterns: tuple[str, ...] = SECRET_NAMES) -> dict[str, str]:
    """``env`` with the value of every name matching one of ``patterns`` replaced."""
    secret = _matcher(patterns)
    return {name: REDACTED if secret(name.upper()) else v for name, v in env.items()}


@functools.lru_cache(maxsize=16)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], object]:
    """Whether an upper-cased name matches one of ``patterns`` (case-insensitive ``fnmatch``),
    as one regular expression: a name is matched once, not once per pattern (an environment
    was redacted in ~0.2 ms, on the event loop of every sweep's start)."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(fnmatch.translate(p.upper()) for p in patterns)).match


def redacted_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` redacted by its own secret names (:func:`secret_patterns`). The last
    answer is kept and given again (never change it) for an equal environment: a daemon's
    sweeps mostly start from one, and redacting it costs ~0.2 ms on the event loop."""
    global _last_environment
    last = _last_environment
    if last is not None and last[0] == environment:
        return last[1]
    found = redacted(environment, secret_patterns(environment))
    _last_environment = (dict(environment), found)
    return found


#: The last environment :func:`redacted_environment` redacted, and its answer.
_last_environment: tuple[dict[str, str], dict[str, str]] | None = None


def known_at_once(environment: Mapping[str, str]) -> dict[str, Any]:
    """The part of an invocation's record known without waiting (no git, no package scan,
    no ``platform.platform()``: it reads the interpreter's binary, ~10 ms the first time),
    with ``collected`` False (a collected record has no such field: the journal reads it as
    True, as for records from before it was marked). Journaled before the invocation's
    first run is created, so that an orchestrator killed before :func:`collect` answers
    leaves its runs with a record of their own invocation, marked incomplete, never with
    an earlier invocation's; the collected record replaces it."""
    return {
        "git_commit": None,
        "git_tree": None,
        "git_dirty": None,
        "diff": None,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "packages": None,
        "host": socket.gethostname(),
        "user": _user(environment),
        "platform": None,
        "cwd": _cwd(),
        "environment": redacted_environment(environment),
        "collected": False,
    }


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working folder was removed
        return None


def collect(folder: Path, environment: Mapping[str, str]) -> Provenance:
    """The provenance of a sweep whose spec (and code) lives in ``folder``, whose runs start
    from ``environment``. Blocking (git, the installed distributions): call it in a thread.
    The code's state is a look shared with the sweeps asking meanwhile (:class:`_Looks`);
    a record equal to the last one is that one (not redacted and built again)."""
    global _last
    code = _LOOKS.get(folder)
    user = _user(environment)
    facts = (code, _packages(), socket.gethostname(), user, platform.platform(), _cwd())
    last = _last
    if last is not None and last[0] == facts and last[1] == environment:
        return last[2]
    commit, tree, dirty, diff = code
    found = Provenance(
        git_commit=commit,
        git_tree=tree,
        git_dirty=dirty,
        diff=diff,
        python=sys.executable,
        python_version=platform.python_version(),
        packages=facts[1],
        host=facts[2],
        user=facts[3],
        platform=facts[4],
        cwd=facts[5],
        environment=redacted_environment(environment),
    )
    _last = (facts, dict(environment), found)
    return found


#: The last record :func:`collect` made, with what it was made of.
_last: tuple[tuple[Any, ...], dict[str, str], Provenance] | None = None


#: The most of the time that looks at the code take: a look starts no sooner than its
#: predecessor's duration divided by this after that one started. A daemon asked for sweeps
#: without a pause runs git a fifth of the time at most (a look at a small repository costs
#: 10-20 ms of CPU in 2 to 4 processes), and a sweep's record waits at most four looks'
#: time longer, and never more than :data:`LOOK_GAP_MAX_S` (a big repository's slow look).
#: A first look, or one after a quiet moment, starts at once; no run waits.
LOOK_SHARE = 0.2
LOOK_GAP_MAX_S = 0.5
#: The code's state: git commit, tree, dirty flag and diff (None each: unknown).
_Code = tuple[str | None, str | None, bool | None, str | None]


def _look(folder: Path) -> _Code:
    """The state of the code in ``folder`` now (2 to 4 ``git`` processes)."""
    heads = (_git(folder, "rev-parse", "HEAD", "HEAD^{tree}") or "").split("\n")
    commit, tree = (heads[0], heads[1]) if len(heads) == 2 else (None, None)
    status = _git(folder, "status", "--porcelain") if commit else None
    dirty = None if status is None else bool(status.strip())
    diff = None
    if dirty:
        tracked = _git(folder, "diff", "HEAD", limit=MAX_DIFF) or ""
        untracked = _git(folder, "ls-files", "--others", "--exclude-standard") or ""
        diff = tracked + "".join(f"untracked: {name}\n" for name in untracked.splitlines())
    return commit, tree, dirty, diff


class _Shared:
    """One look, and the callers waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.callers = 1
        self.code: _Code | None = None
        self.error: BaseException | None = None

    def run(self, look: Callable[[Path], _Code], folder: Path) -> None:
        try:
            self.code = look(folder)
        except BaseException as exc:  # told to every caller, not only the one that ran it
            self.error = exc
            raise
        finally:
            self.done.set()

    def wait(self) -> _Code:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code


class _Looks:
    """Looks at the code, one at a time, each shared: a caller gets a look that *started after
    it asked* (so it sees every change made before it asked), together with everyone who
    asked while the previous look ran or before the next may start (:data:`LOOK_SHARE`).
    A daemon starting sweeps of one folder faster than git answers runs one look per burst,
    not 3 to 5 processes per sweep (which took both cores of a small machine at a few dozen
    submissions a second)."""

    def __init__(self, look: Callable[[Path], _Code]) -> None:
        self._look = look
        #: The most of the time looks take (see :data:`LOOK_SHARE`).
        self.share = LOOK_SHARE
        #: When the next look may start (``time.monotonic()``).
        self._next_start = float("-inf")
        #: Guards :attr:`_next`.
        self._lock = threading.Lock()
        #: Held while a look runs.
        self._running = threading.Lock()
        #: Per folder: the look not started yet that new callers join.
        self._next: dict[Path, _Shared] = {}

    def get(self, folder: Path) -> _Code:
        with self._lock:
            shared = self._next.get(folder)
            if shared is not None:
                shared.callers += 1
                joined = True
            else:
                shared = self._next[folder] = _Shared()
                joined = False
        if joined:
            return shared.wait()
        with self._running:  # the previous look has ended: this one starts soon
            pause = self._next_start - time.monotonic()
            if pause > 0:  # more callers may join meanwhile
                time.sleep(pause)
            with self._lock:
                del self._next[folder]  # whoever asks from now on waits for a later look
            started = time.monotonic()
            try:
                shared.run(self._look, folder)
            finally:
                ended = time.monotonic()
                gap = (ended - started) * (1 / self.share - 1)
                self._next_start = ended + min(gap, LOOK_GAP_MAX_S)
        return shared.wait()

    def waiting(self, folder: Path) -> int:
        """How many callers wait for the next look at ``folder`` (not started yet)."""
        with self._lock:
            shared = self._next.get(folder)
            return 0 if shared is None else shared.callers


_LOOKS = _Looks(_look)


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
    found = set()
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if name:
            found.add(f"{name}=={version}")
    text = "\n".join(sorted(found, key=str.lower))
    _listed = (seen, text)
    return text


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version`` from the header lines of its metadata file,
    read by hand: ``dist.metadata`` parses the whole file as an e-mail message (~0.7 ms a
    distribution, most of a sweep's start-up), where the two fields are in the first lines."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line:  # the headers end at the first empty line
            break
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
        if name is not None and version is not None:
            break
    return name or None, version


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


def _user(environment: Mapping[str, str]) -> str | None:
    """Who runs the sweep, as :func:`getpass.getuser` tells it, from the sweep's
    environment (a plain dict: reading ``os.environ`` decodes, and ``getuser`` reads the
    password database when ``USER`` and the like are not set, as for a service)."""
    for name in _USER_NAMES:
        if environment.get(name):
            return environment[name]
    return _account(os.getuid())


#: What :func:`getpass.getuser` reads first, in its order.
_USER_NAMES = ("LOGNAME", "USER", "LNAME", "USERNAME")


@functools.lru_cache(maxsize=4)
def _account(uid: int) -> str | None:
    """The password database's name for ``uid`` (None: it has none)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None
