"""The run cache, as a plugin: identical configurations are served from an earlier run.

Before a run starts (``decide_before_run``), its key is computed; an entry younger than
``cache.ttl`` answers :class:`UseCached` (the run ends ``succeeded``, reason ``cache_hit``,
with the original's outputs, metrics and logs). An identical run still in flight answers
:class:`Defer`, so the second waits for the first instead of running twice: in this process
(an event), or in another orchestrator on the same home (a claim in the cache store, polled
with backoff; a dead claimant's claim is taken over). When a run succeeds
(``on_run_finished``) its entry is stored; failed and stopped runs never are. Every decision is
recorded with the key's parts, for ``orchestrator cache explain RUN``.

When it applies (Polyaxon's rule, ``POLYAXONFILE.md`` §5): ``cache.disable`` decides when set;
otherwise the cache is on for matrix children and off for a single run. ``--nocache`` and
``--cache BOOL`` set ``disable``.

The key (:mod:`orchestrator_plugins.cache_key`) hashes Polyaxon's parts: the component; the
inputs and context params; and, per ``cache.sections``, the rendered command, env and working
folder, the code by content (:mod:`orchestrator_plugins.cache_tree`: the git tree of the
working folder's repository, without the polyaxonfiles, the home folder and what
``.orchestratorignore`` names; and the content of every argv item that names a file, which
:mod:`orchestrator_plugins.cache_argv` tells without a ``stat`` per item and run), ``init`` and
``connections``. The git tree is read once per sweep and working folder (``ctx.per_sweep``):
a daemon's next sweep sees an edit made in between.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from stat import S_ISREG
from typing import IO, Any, NamedTuple

import anyio
import msgspec

from orchestrator.plugin import (
    CACHE_HIT_REASON,
    Defer,
    RunState,
    UseCached,
    hookimpl,
)
from orchestrator.procinfo import is_same_process, start_time
from orchestrator.store.cache import CacheEntry, CacheStore, Claim, Decision

from .cache_argv import FolderNames, cannot_name_a_file, folded
from .cache_key import (
    SECTIONS,
    command_parts,
    digest,
    masker,
    param_parts,
    spec_files,
)
from .cache_tree import content_tree

__all__ = ["RunCache", "plugin"]

ORCHESTRATOR_PLUGIN_API = 1
#: Seconds one ``decide_before_run`` call waits for another orchestrator's identical run
#: before it hands back a :class:`Defer` (so a stop of the sweep is seen in between).
WAIT_SLICE_S = 2.0
#: Why a run missed when no entry has its key.
NO_ENTRY = "no entry with this key"
#: First and longest pause between two looks at another orchestrator's claim.
POLL_FIRST_S, POLL_MAX_S = 0.02, 0.5


class _Shape(NamedTuple):
    """What the key takes from the sweep rather than the run (read once per sweep)."""

    #: ``cache.io``: the params in the key (None: all).
    wanted: set[str] | None
    sections: set[str]
    #: Input name -> its type.
    types: dict[str, str]
    #: The working folder of a run that names none.
    base_dir: str
    #: The component's hash (the plan hashes it anew at each ask).
    component: str


class _SweepMemo:
    """What the cache remembers for one sweep (``ctx.per_sweep``): it goes with the sweep, so
    a daemon never carries a stale code tree, key or claim into the next one."""

    def __init__(self) -> None:
        #: The code tree of each working folder, computed once (the lock: by the first run).
        self.trees: dict[str, str] = {}
        self.locks: dict[str, anyio.Lock] = {}
        #: Run id -> its key and the key's named parts (a deferred run asks again).
        self.keys: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Runs holding a claim in the store: run id -> key.
        self.claimed: dict[str, str] = {}
        #: Runs waiting for another orchestrator: run id -> the next pause.
        self.polls: dict[str, float] = {}
        #: (path, mtime, size) -> content digest of a file an argv item names.
        self.files: dict[tuple[str, int, int], str] = {}
        #: The path of an argv item that is a file -> its digest, read once per sweep like
        #: the code tree: a sweep's runs see the code as it was when it began.
        self.argv_files: dict[str, str] = {}
        #: The entries of each working folder that may be files, as the folder is now.
        self.folders = FolderNames()
        self.shape: _Shape | None = None
        #: The last decision was a hit: the next run looks for an entry before it claims
        #: (in a sweep run again, most are hits; a claim would be a write that fails).
        self.expect_hits = False


class RunCache:
    """One instance per process. Only what spans sweeps lives on it: the stores, and the
    runs in flight by key (an identical run in another sweep of the same daemon is waited
    for too); everything else is per sweep (:class:`_SweepMemo`)."""

    ORCHESTRATOR_PLUGIN_API = 1

    def __init__(self) -> None:
        self._inflight: dict[str, _Flight] = {}
        #: Where the writer thread answers claims for the running event loop.
        self._mailbox: _Mailbox | None = None
        self._stores: dict[Path, CacheStore] = {}
        self._err: IO[str] | None = None
        self._started: tuple[int, int | None] | None = None

    def _memo(self, ctx: Any) -> _SweepMemo:
        memo: _SweepMemo = ctx.per_sweep(self, _SweepMemo)
        return memo

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
        return digest(await self.key_parts(run, ctx, cache))

    async def key_parts(self, run: Any, ctx: Any, cache: Any) -> dict[str, Any]:
        plan, spec, memo = ctx.plan, run.spec, self._memo(ctx)
        if memo.shape is None:  # the same for every run of the sweep
            memo.shape = _Shape(
                set(cache.io) if cache is not None and cache.io else None,
                set(cache.sections) if cache is not None and cache.sections else set(SECTIONS),
                {io.name: str(io.type) for io in plan.ios if not io.is_output},
                str(plan.spec.base_dir),
                plan.component_hash,
            )
        wanted, sections, types, base_dir, component = memo.shape
        parts: dict[str, Any] = {"component": component}
        parts.update(param_parts(spec.params, types, wanted))
        mask = masker(ctx.home, run.id)
        if "containers" in sections:
            cwd = spec.working_dir or base_dir
            parts.update(command_parts(spec.argv, spec.env, spec.working_dir or "", mask))
            parts.update(await self._file_parts(spec.argv, cwd, memo))
            parts["code:tree"] = memo.trees.get(cwd) or await self._tree(cwd, ctx)
        if "init" in sections:
            parts["init"] = mask(msgspec.json.encode(spec.init).decode())
        if "connections" in sections:
            parts["connections"] = list(getattr(plan.spec.component.run, "connections", None) or [])
        return parts

    async def _file_parts(self, argv: list[str], cwd: str, memo: _SweepMemo) -> dict[str, str]:
        """``code:file ITEM`` for each argv item naming a file. A file is read once per sweep;
        an item naming an entry of the working folder is looked at only if the folder has
        one by that name that may be a file (:mod:`.cache_argv`)."""
        files = {}
        listed: frozenset[str] | None = None
        looked = False  # at the folder, once per run, before any item
        inside = cwd if not cwd or cwd.endswith("/") else cwd + "/"  # as os.path.join would
        for item in argv:
            if cannot_name_a_file(item):
                continue
            where = item if item.startswith("/") else inside + item
            found = memo.argv_files.get(where)
            if found is None:
                if "/" not in item:  # an entry of the working folder itself
                    if not looked:
                        listed, looked = memo.folders.maybe_files(cwd), True
                    if listed is not None and folded(item) not in listed:
                        continue
                found = await self._file_digest(where, memo.files)
                if found is not None:
                    memo.argv_files[where] = found
            if found is not None:
                files[f"code:file {item}"] = found
        return files

    @staticmethod
    async def _file_digest(where: str, known_files: dict[tuple[str, int, int], str]) -> str | None:
        try:
            stat = os.stat(where)  # one cheap syscall; the hash is remembered per mtime
        except OSError:
            return None
        if not S_ISREG(stat.st_mode):  # a folder: no thread needed to say so
            return None
        known = known_files.get((where, stat.st_mtime_ns, stat.st_size))
        return known or await anyio.to_thread.run_sync(_file_digest, Path(where), known_files)

    async def _tree(self, cwd: str, ctx: Any) -> str:
        """The code tree around ``cwd``, computed once per sweep (concurrent runs wait for
        the first one's answer)."""
        memo = self._memo(ctx)
        known = memo.trees.get(cwd)
        if known is not None:  # every run after the first: no lock (a loop turn each)
            return known
        lock = memo.locks.setdefault(cwd, anyio.Lock())
        async with lock:
            if cwd not in memo.trees:
                spec = ctx.spec
                leave_out = [
                    *spec_files(spec.source, spec.component_source, spec.base_dir),
                    Path(ctx.home),
                ]
                memo.trees[cwd] = await content_tree(cwd, leave_out)
        return memo.trees[cwd]

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def orchestrator_configure(self, config: Any) -> None:
        """Where to say that a run waits for another orchestrator (the CLI's stderr)."""
        options = config.get("options") if isinstance(config, dict) else None
        self._err = getattr(options, "err", None)

    @hookimpl
    async def observes(self, ctx: Any) -> list[str]:
        """Only the sweep's end (every run's end comes through ``on_run_finished``); a
        sweep the cache is off for needs no events at all."""
        enabled, _ = self.settings(ctx)
        return ["on_sweep_finished"] if enabled else []

    @hookimpl
    async def decide_before_run(self, run: Any, ctx: Any) -> UseCached | Defer | None:
        enabled, cache = self.settings(ctx)
        if not enabled:
            return None
        key = await self._key_of(run, ctx, cache)
        ttl = cache.ttl if cache is not None else None
        memo = self._memo(ctx)
        looked: str | None = None  # why a look already made found no usable entry
        if memo.expect_hits:  # a sweep run again: look first, no claim written only to fail
            found = await self._lookup(run, ctx, key, ttl)
            if isinstance(found, UseCached):
                return self._hit(run, ctx, found)
            memo.expect_hits, looked = False, found
        if looked in (None, NO_ENTRY):
            if await self._claim_unanswered(run, ctx, key):
                return None  # a miss, recorded with the claim
            looked = None  # the claim found an entry or a holder: look again
        give_up_at = anyio.current_time() + WAIT_SLICE_S
        while True:
            found = looked if looked is not None else await self._lookup(run, ctx, key, ttl)
            looked = None
            if isinstance(found, UseCached):
                return self._hit(run, ctx, found)
            owner = self._inflight.get(key)
            if owner is not None and owner.run_id != run.id:
                return Defer(owner.event())
            holder = self._claim(run, ctx, key)
            if holder is None:
                return await self._claimed_miss(run, ctx, key, ttl, found)
            self._announce(run, holder, ctx)
            if anyio.current_time() >= give_up_at:
                return Defer(_set_event())  # ask again at once, once the sweep had its say
            await anyio.sleep(self._next_poll(run.id, ctx))

    async def _key_of(self, run: Any, ctx: Any, cache: Any) -> str:
        """The run's key, computed once (a deferred run asks again)."""
        keys = self._memo(ctx).keys
        known = keys.get(run.id)
        if known is None:
            parts = await self.key_parts(run, ctx, cache)
            known = keys[run.id] = (digest(parts), parts)
        return known[0]

    async def _claim_unanswered(self, run: Any, ctx: Any, key: str) -> bool:
        """The common miss in one statement, before any lookup: claim ``key`` if nobody
        holds it (a twin here holds it too) and no entry answers it. False: the lookup, the
        twins and :meth:`_claim` decide as before.

        The claim is taken on the loop when the file is not busy (one small transaction
        that never waits for a lock). Otherwise the store's writer thread takes it, with
        others, and the run waits for the commit without blocking the loop; meanwhile the
        run stands in ``_inflight``, so a twin here defers to it instead of claiming (and
        then taking over a claim of this process it would think left behind)."""
        if key in self._inflight:
            return False
        store = self.store(ctx.home)
        claim = self._new_claim(run, ctx, key)
        miss = self._decision(run, ctx, "miss", NO_ENTRY, None)
        taken_now = store.claim_unanswered_now(claim)
        if taken_now is not None:  # answered at once (the file was not busy)
            if taken_now:
                store.record_later(miss)
                self._hold(run, ctx, key)
            return taken_now
        mailbox = self._mailbox_here()
        mine = self._inflight[key] = _Flight(run.id)
        future: asyncio.Future[bool] = mailbox.loop.create_future()
        taken = False
        try:
            answer = _Answer(mailbox, future, functools.partial(store.release_later, key, run.id))
            taken = store.claim_unanswered_later(claim, answer, decision=miss) and await future
        finally:
            if taken:
                self._memo(ctx).claimed[run.id] = key
            elif self._inflight.get(key) is mine:
                del self._inflight[key]
                mine.end()  # a twin that deferred to this run asks again
        return taken

    def _mailbox_here(self) -> _Mailbox:
        """The mailbox of the running event loop (the orchestrator runs on asyncio only)."""
        loop = asyncio.get_running_loop()
        mailbox = self._mailbox
        if mailbox is None or mailbox.loop is not loop:
            mailbox = self._mailbox = _Mailbox(loop)
        return mailbox

    def _claim(self, run: Any, ctx: Any, key: str) -> Claim | None:
        """Claim ``key`` for ``run`` in the store; the live holder when another has it."""
        holder = self.store(ctx.home).claim(self._new_claim(run, ctx, key), self._alive)
        if holder is None:
            self._hold(run, ctx, key)
        return holder

    def _new_claim(self, run: Any, ctx: Any, key: str) -> Claim:
        pid = os.getpid()
        return Claim(
            key=key,
            run_id=run.id,
            sweep_id=ctx.sweep_id,
            pid=pid,
            pid_start=self._start_time(pid),
            claimed_at=time.time(),
        )

    def _hold(self, run: Any, ctx: Any, key: str) -> None:
        """The claim is ours. Synchronous from the claim to here: a twin in this process
        sees one or both."""
        self._inflight[key] = _Flight(run.id)
        self._memo(ctx).claimed[run.id] = key

    async def _lookup(self, run: Any, ctx: Any, key: str, ttl: float | None) -> UseCached | str:
        """The entry for ``key`` as an answer, or why there is none."""
        store = self.store(ctx.home)
        entry = store.get(key)
        if entry is None or entry.run_id == run.id:
            return NO_ENTRY
        age = time.time() - entry.finished_at
        if ttl is not None and age >= ttl:
            return f"the entry of run {entry.run_id[:12]} had expired (age {age:.0f}s, ttl {ttl}s)"
        # The journal is the truth: an entry whose run it does not show as succeeded
        # (say, its orchestrator was killed before the journal caught up) is void.
        state = await ctx.journaled_state(entry.run_id)
        if state == RunState.SUCCEEDED:
            return UseCached(entry.run_id, dict(entry.outputs))
        store.delete(key, run_id=entry.run_id)
        return f"the entry of run {entry.run_id[:12]} was void (the journal shows it {state})"

    async def _claimed_miss(
        self, run: Any, ctx: Any, key: str, ttl: float | None, why: str
    ) -> UseCached | None:
        """The claim is ours: run it, unless the claimant before us stored an entry between
        our look and our claim."""
        again = await self._lookup(run, ctx, key, ttl)
        if isinstance(again, UseCached):
            self._release(run.id, ctx)
            return self._hit(run, ctx, again)
        self._record(run, ctx, "miss", why, None)
        return None

    def _hit(self, run: Any, ctx: Any, hit: UseCached) -> UseCached:
        memo = self._memo(ctx)
        memo.polls.pop(run.id, None)
        memo.expect_hits = True
        self._record(run, ctx, "hit", "an entry with this key", hit.source_run_id)
        return hit

    def _record(self, run: Any, ctx: Any, verdict: str, detail: str, source: str | None) -> None:
        self.store(ctx.home).record_later(self._decision(run, ctx, verdict, detail, source))

    def _decision(
        self, run: Any, ctx: Any, verdict: str, detail: str, source: str | None
    ) -> Decision:
        key, parts = self._memo(ctx).keys[run.id]
        return Decision(
            run_id=run.id,
            sweep_id=ctx.sweep_id,
            key=key,
            decided_at=time.time(),
            verdict=verdict,
            detail=detail,
            source_run_id=source,
            parts=parts,
        )

    def _start_time(self, pid: int) -> int | None:
        """This process's start time, read once (a forked child reads its own)."""
        if self._started is None or self._started[0] != pid:
            self._started = (pid, start_time(pid))
        return self._started[1]

    @staticmethod
    def _alive(holder: Claim) -> bool:
        """Is another live process running ``holder``'s run? (This process's own claims are
        in ``_inflight`` while they are alive; one that is not was left behind.)"""
        return holder.pid != os.getpid() and is_same_process(holder.pid, holder.pid_start)

    def _next_poll(self, run_id: str, ctx: Any) -> float:
        polls = self._memo(ctx).polls
        pause = polls.get(run_id, POLL_FIRST_S)
        polls[run_id] = min(pause * 2, POLL_MAX_S)
        return pause

    def _announce(self, run: Any, holder: Claim, ctx: Any) -> None:
        """Say once that a run waits for another orchestrator (a silent wait looks hung)."""
        if run.id in self._memo(ctx).polls or self._err is None:
            return
        try:
            self._err.write(
                f"#{run.index:<4} waiting for the identical run {holder.run_id[:12]} of another "
                f"orchestrator (pid {holder.pid}); its result will be reused\n"
            )
            self._err.flush()
        except (OSError, ValueError):
            pass  # a closed stderr: the wait goes on silently

    @hookimpl
    async def on_run_finished(self, run: Any, ctx: Any) -> None:
        memo = self._memo(ctx)
        known = memo.keys.pop(run.id, None)
        memo.polls.pop(run.id, None)
        if known is None:
            return
        key, parts = known
        hit = (run.reason or "").startswith(CACHE_HIT_REASON)
        if run.state is not RunState.SUCCEEDED or hit:
            self._release(run.id, ctx)
            return
        # Written off the loop, in one transaction with the claim let go, and only once the
        # journal holds the run's success (another orchestrator finding the entry checks it).
        entry = CacheEntry(
            key=key,
            run_id=run.id,
            sweep_id=ctx.sweep_id,
            finished_at=run.finished_at or time.time(),
            outputs=dict(run.outputs),
            params=dict(run.spec.params),
            parts=parts,
        )
        held = memo.claimed.get(run.id) == key
        self.store(ctx.home).put_later(entry, confirm=ctx.wait_journaled, release=held)
        self._release(run.id, ctx, in_store=not held)

    @hookimpl
    async def on_sweep_finished(self, ctx: Any) -> None:
        """Whatever this sweep still claims is let go (a run cancelled mid-way), and what it
        queued is written before the sweep ends."""
        for run_id in list(self._memo(ctx).claimed):
            self._release(run_id, ctx)
        store = self.store(ctx.home)
        store.release_sweep_later(ctx.sweep_id, os.getpid())
        await anyio.to_thread.run_sync(store.flush)

    def _release(self, run_id: str, ctx: Any, *, in_store: bool = True) -> None:
        """Let ``run_id``'s claim go: its twins here at once, the store's off the loop
        (``in_store=False``: its entry's transaction lets it go)."""
        key = self._memo(ctx).claimed.pop(run_id, None)
        if key is None:
            return
        if in_store:
            self.store(ctx.home).release_later(key, run_id)
        owner = self._inflight.get(key)
        if owner is not None and owner.run_id == run_id:
            del self._inflight[key]
            owner.end()


def _file_digest(path: Path, known_files: dict[tuple[str, int, int], str]) -> str | None:
    """The content digest of ``path`` (a regular file), remembered per mtime and size."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    marker = (str(path), stat.st_mtime_ns, stat.st_size)
    known = known_files.get(marker)
    if known is None:
        try:
            known = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
        known_files[marker] = known
    return known


class _Flight:
    """A run of this process in flight under a key; its twins here wait for :meth:`end`.
    The event is made only when a twin asks for it (most runs have none)."""

    __slots__ = ("_ended", "_event", "run_id")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._event: anyio.Event | None = None
        self._ended = False

    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
            if self._ended:
                self._event.set()
        return self._event

    def end(self) -> None:
        self._ended = True
        if self._event is not None:
            self._event.set()


class _Mailbox:
    """Answers from the store's writer thread to one event loop. Only the first answer since
    the loop last emptied it wakes the loop; the others ride along, so a transaction that
    took several claims costs the loop one wake-up, not one each."""

    __slots__ = ("_answers", "_lock", "_woken", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._answers: list[tuple[Callable[[bool], None], bool]] = []
        self._lock = threading.Lock()
        self._woken = False

    def post(self, deliver: Callable[[bool], None], taken: bool) -> None:
        """On the writer thread: ``deliver(taken)`` runs on the loop, soon."""
        with self._lock:
            self._answers.append((deliver, taken))
            if self._woken:
                return
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._empty)
        except RuntimeError:  # the loop has closed: nobody waits for these answers
            with self._lock:
                self._woken = False
            raise

    def _empty(self) -> None:
        with self._lock:
            answers, self._answers = self._answers, []
            self._woken = False
        for deliver, taken in answers:
            try:
                deliver(taken)
            except Exception as exc:  # as a handle of its own would: the others still go
                self.loop.call_exception_handler({"message": "cache answer", "exception": exc})


class _Answer:
    """Tells a run waiting on the event loop whether the store's writer thread took its
    claim. A run cancelled meanwhile is not there to hold it: it is let go again."""

    __slots__ = ("_future", "_mailbox", "_release")

    def __init__(
        self,
        mailbox: _Mailbox,
        future: asyncio.Future[bool],
        release: Callable[[], None],
    ) -> None:
        self._mailbox, self._future, self._release = mailbox, future, release

    def __call__(self, taken: bool) -> None:
        """On the writer thread."""
        self._mailbox.post(self._deliver, taken)

    def _deliver(self, taken: bool) -> None:
        if not self._future.done():
            self._future.set_result(taken)
        elif taken:
            self._release()


def _set_event() -> anyio.Event:
    event = anyio.Event()
    event.set()
    return event


plugin = RunCache()
