"""``init`` sections run before a job starts: ``git`` clones (cached) and ``file`` contents.

No spec can make them write outside the run's folder or run a command:

- every ``path`` and ``filename`` is resolved (symlinks followed) and must land inside the
  run's folder; a file is opened with ``O_NOFOLLOW``;
- a file's ``chmod`` (octal, ``755``, or symbolic, ``+x``, ``u+rwx,go-w``) may not set the
  setuid, setgid or sticky bit, nor make the file writable by everyone;
- a git ``url`` must be an ``https``/``http``/``ssh``/``git``/``file`` URL, an scp-like
  ``[user@]host:path`` or a local path (never an option, nor a remote helper such as
  ``ext::``), and goes after ``--``; a ``revision`` may not look like an option;
- git ``flags`` come from an allow-list (:data:`GIT_FLAGS`): ``--upload-pack``, ``--config``,
  ``--template`` and the like would run commands or write elsewhere.

A refusal is an :class:`ExecutorError` with a one-line reason: the run fails, the sweep goes on.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import anyio

from orchestrator.exceptions import ExecutorError
from orchestrator.spec import models as m

__all__ = ["GIT_FLAGS", "GIT_SCHEMES", "prepare_init"]

_locks: dict[str, anyio.Lock] = {}

#: URL schemes a git ``url`` may use (``git+ssh`` and ``ssh+git`` are git's names for ssh).
GIT_SCHEMES = frozenset({"https", "http", "ssh", "git", "file", "git+ssh", "ssh+git"})

_REF = r"[^-\s\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*"
_COUNT = r"[1-9][0-9]{0,8}"
#: ``git clone`` flags a spec may give, with the pattern their value must match (None: the
#: flag takes no value). Short forms: ``-b`` (``--branch``), ``-j`` (``--jobs``), ``-q``,
#: ``-n`` (``--no-checkout``). A value may follow as ``--flag=VALUE`` or as the next item.
GIT_FLAGS: dict[str, str | None] = {
    "--depth": _COUNT,
    "--branch": _REF,
    "--shallow-since": r"[A-Za-z0-9][A-Za-z0-9:.,+/_-]*",
    "--shallow-exclude": _REF,
    "--filter": r"[A-Za-z][A-Za-z0-9:=+._%-]*",
    "--jobs": _COUNT,
    "--single-branch": None,
    "--no-single-branch": None,
    "--recurse-submodules": None,
    "--recursive": None,
    "--shallow-submodules": None,
    "--no-shallow-submodules": None,
    "--remote-submodules": None,
    "--no-remote-submodules": None,
    "--also-filter-submodules": None,
    "--no-tags": None,
    "--sparse": None,
    "--no-checkout": None,
    "--no-hardlinks": None,
    "--quiet": None,
    "--verbose": None,
    "--progress": None,
    "--reject-shallow": None,
    "--no-reject-shallow": None,
}
_SHORT = {
    "-b": "--branch",
    "-j": "--jobs",
    "-q": "--quiet",
    "-v": "--verbose",
    "-n": "--no-checkout",
}

_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address>
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)", re.DOTALL)
_SCP = re.compile(r"(?:[^@/:\s]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):.*", re.DOTALL)
_SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwx]*)")


def _refuse_control(value: str, what: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ExecutorError(f"{what}: {value!r} contains control characters")


def _check_url(url: str) -> None:
    """Refuse a ``url`` git would read as an option, a remote helper or an unknown scheme."""
    what = "init git: url"
    _refuse_control(url, what)
    if url != url.strip():
        raise ExecutorError(f"{what} {url!r}: leading or trailing spaces")
    if url.startswith("-"):
        raise ExecutorError(f"{what} {url!r} looks like an option")
    if _HELPER.match(url):
        raise ExecutorError(f"{what} {url!r}: remote helpers (<transport>::) are not allowed")
    scheme = _SCHEME.match(url)
    if scheme is not None:
        name, authority = scheme.group(1).lower(), scheme.group(2)
        if name not in GIT_SCHEMES:
            allowed = ", ".join(sorted(GIT_SCHEMES))
            raise ExecutorError(f"{what} {url!r}: scheme {name}:// is not allowed ({allowed})")
        if authority.startswith("-") or authority.rpartition("@")[2].startswith("-"):
            raise ExecutorError(f"{what} {url!r}: a host may not start with '-'")
        return
    colon, slash = url.find(":"), url.find("/")
    scp_like = colon != -1 and (slash == -1 or colon < slash)  # git reads it as ssh
    if scp_like and (not _SCP.fullmatch(url) or url[:colon].rpartition("@")[2].startswith("-")):
        raise ExecutorError(
            f"{what} {url!r} is neither a URL ({', '.join(sorted(GIT_SCHEMES))}), "
            "an scp-like [user@]host:path, nor a local path"
        )
    # Otherwise a local path (it does not start with '-', and goes after '--' anyway).


def _check_flags(flags: list[str]) -> list[str]:
    """``flags`` as ``--name`` / ``--name=value`` items, each checked against GIT_FLAGS."""
    items = [part for flag in flags for part in str(flag).split()]
    checked: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        name, eq, value = item.partition("=") if item.startswith("--") else (item, "", "")
        name = _SHORT.get(name, name)
        if name not in GIT_FLAGS:
            raise ExecutorError(
                f"init git: flag {item!r} is not allowed (allowed: {', '.join(GIT_FLAGS)})"
            )
        pattern = GIT_FLAGS[name]
        if pattern is None:
            if eq:
                raise ExecutorError(f"init git: flag {name} takes no value")
            checked.append(name)
            continue
        if not eq:
            if i >= len(items):
                raise ExecutorError(f"init git: flag {name} needs a value")
            value = items[i]
            i += 1
        if not re.fullmatch(pattern, value):
            raise ExecutorError(f"init git: flag {name}: {value!r} is not a valid value")
        checked.append(f"{name}={value}")
    return checked


def _check_revision(revision: str) -> None:
    _refuse_control(revision, "init git: revision")
    if not revision.strip() or revision.startswith("-") or revision != revision.strip():
        raise ExecutorError(f"init git: revision {revision!r} is not a commit, tag or branch")


def _confined(root: Path, base: Path, path: str, what: str, *, below: bool = False) -> Path:
    """``path`` (absolute, or relative to ``base``) resolved, symlinks followed; it must be
    inside ``root`` (the run's folder; ``below``: not ``root`` itself)."""
    if "\x00" in path:
        raise ExecutorError(f"{what} {path!r} contains a NUL byte")
    candidate = Path(path) if os.path.isabs(path) else base / path
    resolved = candidate.resolve()
    top = root.resolve()
    if not resolved.is_relative_to(top):
        raise ExecutorError(f"{what} {path!r} is outside the run's folder")
    if below and resolved == top:
        raise ExecutorError(f"{what} {path!r} is the run's folder itself")
    return resolved


def _repo_name(url: str) -> str:
    name = re.split(r"[/:]", url.rstrip("/"))[-1].removesuffix(".git")
    return name if name not in ("", ".", "..") else "repo"


async def _git(*args: str, cwd: Path | None = None) -> None:
    result = await anyio.run_process(
        ["git", *args], cwd=cwd, check=False, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise ExecutorError(f"git {args[0]} failed: {detail[-1] if detail else result.returncode}")


async def _clone(
    git: m.GitInit, root: Path, artifacts: Path, cache_root: Path, path: str | None
) -> None:
    url = git.url
    if not url:
        raise ExecutorError("init git: a url is required locally")
    _check_url(url)
    flags = _check_flags(git.flags or [])
    if git.revision is not None:
        _check_revision(git.revision)
    dest = await anyio.to_thread.run_sync(
        lambda: _confined(root, artifacts, path or _repo_name(url), "init git: path", below=True)
    )
    identity = "\0".join([url, git.revision or "", *flags])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    cached = cache_root / key
    lock = _locks.setdefault(key, anyio.Lock())
    async with lock:
        if not await anyio.Path(cached / ".git").exists():
            await anyio.Path(cache_root).mkdir(parents=True, exist_ok=True)
            tmp = cache_root / f"{key}.partial-{os.getpid()}"
            await _git("clone", "--quiet", *flags, "--", url, str(tmp))
            if git.revision:
                await _git("checkout", "--quiet", git.revision, "--", cwd=tmp)
            await anyio.Path(tmp).rename(cached)
    await anyio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
    await _git("clone", "--quiet", "--shared", "--", str(cached), str(dest))
    if git.revision:
        await _git("checkout", "--quiet", git.revision, "--", cwd=dest)


def _file_mode(chmod: str, umask: int) -> int:
    """The mode ``chmod`` gives a new file (octal, or symbolic as in chmod(1) without s/t);
    setuid, setgid, sticky and world-writable modes are refused."""
    what = f"init file: chmod {chmod!r}"
    text = chmod.strip()
    if re.fullmatch(r"(0o)?[0-7]{1,4}", text):
        mode = int(text.removeprefix("0o"), 8)
    else:
        mode = 0o666 & ~umask  # what the new file starts with
        for clause in text.split(","):
            match = _SYMBOLIC.fullmatch(clause)
            if match is None:
                raise ExecutorError(
                    f"{what} is not an octal mode (755) or a symbolic one (+x, u+rwx,go-w)"
                )
            who, op, perms = match.groups()
            bits = sum({"r": 0o444, "w": 0o222, "x": 0o111}[p] for p in set(perms))
            mask = sum(
                {"u": 0o700, "g": 0o070, "o": 0o007}[w] for w in set(who.replace("a", "ugo"))
            )
            bits &= mask if who else ~umask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~(mask or 0o777)) | bits
    if mode & 0o7000:
        raise ExecutorError(f"{what}: setuid, setgid and sticky bits are not allowed")
    if mode & 0o002:
        raise ExecutorError(f"{what}: a file writable by everyone is not allowed")
    return mode


def _umask() -> int:
    """The process's umask, read without setting it (``os.umask`` would change it for every
    thread for a moment)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


async def _write_file(file: m.FileInit, root: Path, artifacts: Path, path: str | None) -> None:
    mode = _file_mode(file.chmod, _umask()) if file.chmod else None

    def write() -> None:
        folder = _confined(root, artifacts, path or "", "init path")
        target = _confined(root, folder, file.filename or "file", "init file: filename", below=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if mode is not None:
                os.fchmod(fd, mode)
            f.write(file.content)

    try:
        await anyio.to_thread.run_sync(write)
    except OSError as exc:
        name = file.filename or "file"
        raise ExecutorError(f"init file: cannot write {name!r}: {exc.strerror or exc}") from None


async def prepare_init(
    inits: list[m.Init], artifacts: Path, cache_root: Path, *, run_dir: Path | None = None
) -> None:
    """Run every init entry in order, inside ``run_dir`` (default: the folder that holds
    ``artifacts``); raise ExecutorError with a one-line reason on failure or refusal."""
    root = run_dir if run_dir is not None else artifacts.parent
    for entry in inits:
        if entry.git is not None:
            try:
                await _clone(entry.git, root, artifacts, cache_root, entry.path)
            except FileNotFoundError:
                raise ExecutorError("init git: git is not installed") from None
            except (OSError, subprocess.SubprocessError) as exc:
                raise ExecutorError(f"init git: {exc}") from None
        elif entry.file is not None:
            await _write_file(entry.file, root, artifacts, entry.path)
