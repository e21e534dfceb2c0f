"""The run cache, as a plugin: identical configurations are served from an earlier run.

Before a run starts (``decide_before_run``), its key is computed; an entry younger than
``cache.ttl`` answers :class:`UseCached` (the run ends ``succeeded``, reason ``cache_hit``,
with the original's outputs, metrics and logs). An identical run still in flight answers
:class:`Defer`, so the second waits for the first instead of running twice. When a run
succeeds (``on_run_finished``) its entry is stored; failed and stopped runs never are.

When it applies (Polyaxon's rule, ``POLYAXONFILE.md`` §5): ``cache.disable`` decides when set;
otherwise the cache is on for matrix children and off for a single run. ``--nocache`` and
``--cache BOOL`` set ``disable``.

The key hashes Polyaxon's parts: the component; the inputs and context params (matrix keys
that are no input) as name, type, value, only those in ``cache.io`` when given; and, per
``cache.sections`` (default: all), ``containers`` (the rendered command, args, env and working
folder, with run-specific paths and ids masked),
``init`` and ``connections``. ``containers`` also covers the code a run executes, so editing
``train.py`` invalidates the cache: the content of every argv item that names an existing
file, and, when the working folder is inside a git repository, its commit and a hash of its
uncommitted diff (under that folder). The git state is read once per sweep and working folder
(``ctx.per_sweep``): a daemon's next sweep sees an edit made in between.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

from orchestrator.plugin import Defer, RunState, UseCached, hookimpl
from orchestrator.store.cache import CacheEntry, CacheStore

__all__ = ["RunCache", "plugin"]

ORCHESTRATOR_PLUGIN_API = 1
_SECTIONS = ("init", "connections", "containers")


class RunCache:
    """One instance per process; keys and in-flight runs are tracked per run id (an identical
    run in flight in another sweep of the same daemon is waited for too); the git state of a
    working folder is remembered for one sweep only."""

    ORCHESTRATOR_PLUGIN_API = 1

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._inflight: dict[str, tuple[str, anyio.Event]] = {}
        self._files: dict[tuple[str, int, int], str] = {}
        self._stores: dict[Path, CacheStore] = {}

    def store(self, home: Path) -> CacheStore:
        known = self._stores.get(home)
        if known is None:
            known = self._stores[home] = CacheStore(home)
        return known

    # ------------------------------------------------------------------ settings
    @staticmethod
    def settings(ctx: Any) -> tuple[bool, Any]:
        spec = ctx.spec
        cache = spec.operation.cache or spec.component.cache
        if cache is not None and cache.disable is not None:
            return not cache.disable, cache
        return spec.operation.matrix is not None, cache

    # ------------------------------------------------------------------ the key
    async def key(self, run: Any, ctx: Any, cache: Any) -> str:
        plan, spec = ctx.plan, run.spec
        wanted_io = set(cache.io) if cache is not None and cache.io else None
        sections = set(cache.sections) if cache is not None and cache.sections else set(_SECTIONS)
        types = {io.name: str(io.type) for io in plan.ios if not io.is_output}
        # Inputs and context params (matrix keys that are no input) both count, as in
        # Polyaxon's "in-" and "ctx-" parts; ``cache.io`` filters them all.
        inputs = sorted(
            (
                {"name": name, "type": types.get(name), "value": value}
                for name, value in spec.params.items()
                if wanted_io is None or name in wanted_io
            ),
            key=lambda item: str(item["name"]),
        )
        mask = _masker(ctx.home, run.id)
        parts: dict[str, Any] = {"component": plan.component_hash, "inputs": inputs}
        if "containers" in sections:
            cwd = spec.working_dir or str(plan.spec.base_dir)
            parts["containers"] = {
                "argv": [mask(a) for a in spec.argv],
                "env": {k: mask(v) for k, v in sorted(spec.env.items())},
                "working_dir": mask(spec.working_dir or ""),
                "code": await self._code(spec.argv, cwd, ctx.per_sweep(self, dict)),
            }
        if "init" in sections:
            parts["init"] = mask(msgspec.json.encode(spec.init).decode())
        if "connections" in sections:
            parts["connections"] = list(getattr(plan.spec.component.run, "connections", None) or [])
        encoded = msgspec.json.encode(parts, order="sorted")
        return hashlib.sha256(encoded).hexdigest()

    async def _code(self, argv: list[str], cwd: str, git_memo: dict[str, str]) -> dict[str, str]:
        files = {}
        for item in argv:
            path = Path(item) if os.path.isabs(item) else Path(cwd) / item
            try:
                stat = path.stat()  # one cheap syscall; the hash is remembered per mtime
            except OSError:
                continue
            known = self._files.get((str(path), stat.st_mtime_ns, stat.st_size))
            digest = known or await anyio.to_thread.run_sync(self._file_digest, path)
            if digest is not None:
                files[item] = digest
        return {
            "files": msgspec.json.encode(files, order="sorted").decode(),
            "git": await self._git_state(cwd, git_memo),
        }

    def _file_digest(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file():
            return None
        marker = (str(path), stat.st_mtime_ns, stat.st_size)
        known = self._files.get(marker)
        if known is None:
            try:
                known = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                return None
            self._files[marker] = known
        return known

    @staticmethod
    async def _git_state(cwd: str, memo: dict[str, str]) -> str:
        """The commit and uncommitted diff of the repository around ``cwd``, read once per
        sweep (``memo`` lives as long as the sweep)."""
        if cwd in memo:
            return memo[cwd]
        state = ""
        try:
            head = await anyio.run_process(["git", "rev-parse", "HEAD"], cwd=cwd, check=False)
            if head.returncode == 0:
                diff = await anyio.run_process(
                    ["git", "diff", "HEAD", "--", "."], cwd=cwd, check=False
                )
                state = head.stdout.decode().strip() + ":" + hashlib.sha256(diff.stdout).hexdigest()
        except OSError:
            state = ""  # no git, or cwd missing: the argv file hashes still cover the code
        memo[cwd] = state
        return state

    # ------------------------------------------------------------------ hooks
    @hookimpl
    async def decide_before_run(self, run: Any, ctx: Any) -> UseCached | Defer | None:
        enabled, cache = self.settings(ctx)
        if not enabled:
            return None
        key = self._keys.get(run.id) or await self.key(run, ctx, cache)
        self._keys[run.id] = key
        entry = self.store(ctx.home).get(key)
        ttl = cache.ttl if cache is not None else None
        fresh = entry is not None and (ttl is None or time.time() - entry.finished_at < ttl)
        if entry is not None and fresh and entry.run_id != run.id:
            # The journal is the truth: an entry whose run it does not show as succeeded
            # (say, its orchestrator was killed before the journal caught up) is void.
            if await ctx.journaled_state(entry.run_id) == RunState.SUCCEEDED:
                return UseCached(entry.run_id, dict(entry.outputs))
            self.store(ctx.home).delete(key)
        owner = self._inflight.get(key)
        if owner is not None and owner[0] != run.id:
            return Defer(owner[1])
        self._inflight[key] = (run.id, anyio.Event())
        return None

    @hookimpl
    async def on_run_finished(self, run: Any, ctx: Any) -> None:
        key = self._keys.pop(run.id, None)
        if key is None:
            return
        owner = self._inflight.get(key)
        try:
            hit = (run.reason or "").startswith("cache_hit")
            if run.state is RunState.SUCCEEDED and not hit:
                self.store(ctx.home).put(
                    CacheEntry(
                        key=key,
                        run_id=run.id,
                        sweep_id=ctx.sweep_id,
                        finished_at=run.finished_at or time.time(),
                        outputs=dict(run.outputs),
                        params=dict(run.spec.params),
                    )
                )
        finally:
            if owner is not None and owner[0] == run.id:
                del self._inflight[key]
                owner[1].set()


def _masker(home: Path, run_id: str) -> Any:
    """Hide what differs between identical runs: their ids and folders."""
    run_dir = str(home / "runs" / run_id)

    def mask(text: str) -> str:
        return text.replace(run_dir, "<run>").replace(run_id, "<uuid>").replace(str(home), "<home>")

    return mask


plugin = RunCache()
