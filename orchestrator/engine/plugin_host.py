"""Loading plugins (:class:`PluginHost`, once per process) and calling their hooks from async
code for one sweep (:class:`PluginScope`, one per sweep; pluggy itself is synchronous).

Discovery reads the ``orchestrator.plugins`` entry-point group (built-in plugins included),
honouring allow (``--plugin``) and deny (``--no-plugin``) lists and the API-version fence. A
plugin that sets ``ORCHESTRATOR_PLUGIN_OPT_IN = True`` (the trackers: they write elsewhere) is
off unless named, by ``--plugin`` or in ``ORCHESTRATOR_ENABLE_PLUGINS`` (comma-separated).
Calls follow pluggy's order (last registered first), pass each implementation only the
arguments it names, enforce ``firstresult`` for decisions, bound every call (every batch of
events an observer handles at once) with a timeout,
and run synchronous implementations in a worker thread so that even a hung one can be
abandoned. A failing plugin is named and switched off for the rest of *its sweep* (the next
sweep of a daemon calls it again), or, with ``--strict-plugins``, stops that sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any, cast

import anyio
import anyio.abc
import pluggy

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.events import EVENT_TYPES, Event
from orchestrator.exceptions import PluginError
from orchestrator.hooks import OBSERVERS, PLUGIN_API_VERSION, OrchestratorHooks

__all__ = ["ENTRY_POINT_GROUP", "LoadedPlugin", "PluginHost", "PluginScope"]

ENTRY_POINT_GROUP = "orchestrator.plugins"
#: Seconds one hook call may take before its plugin is switched off.
DEFAULT_TIMEOUT_S = 30.0
#: Most events one observer handles in one batch (under one timeout).
MAX_BATCH = 256
#: Opt-in plugins to load besides the default ones (comma-separated entry-point names): the
#: configuration that reaches every process (CLI and daemon) without a flag.
ENABLE_ENV = "ORCHESTRATOR_ENABLE_PLUGINS"


def enabled_from_env() -> set[str]:
    """The opt-in plugins :data:`ENABLE_ENV` names."""
    return {name.strip() for name in os.environ.get(ENABLE_ENV, "").split(",") if name.strip()}


@dataclass
class LoadedPlugin:
    name: str
    source: str
    hooks: list[str] = field(default_factory=list)


class PluginHost:
    """The plugins of one process: discovered, checked and registered once."""

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
        strict: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        report: Callable[[str], None] | None = None,
        enable: Iterable[str] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager("orchestrator")
        self.pm.add_hookspecs(OrchestratorHooks)
        self.allow = set(allow) if allow is not None else None
        self.deny = set(deny)
        #: Opt-in plugins switched on (besides any ``allow`` names); default: the environment.
        self.enable = set(enable) if enable is not None else enabled_from_env()
        #: Opt-in plugins installed but not switched on: name -> source.
        self.opt_in_off: dict[str, str] = {}
        self.strict = strict
        self.timeout = timeout
        self.report = report or (lambda message: None)
        self.loaded: dict[str, LoadedPlugin] = {}
        #: Plugins refused when loading (they are not registered).
        self.rejected: set[str] = set()
        #: :meth:`observer_plan`, once worked out (None: again, after a registration).
        self._observer_plan: dict[str, tuple[type, ...]] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def installed(
        cls,
        err: IO[str],
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
        strict: bool = False,
    ) -> PluginHost:
        """The installed plugins that ``allow``/``deny`` let in; problems go to ``err``."""

        def report(message: str) -> None:
            err.write(f"{message}\n")
            err.flush()

        host = cls(allow=allow, deny=deny, strict=strict, report=report)
        host.discover()
        return host

    def discover(self) -> None:
        """Load every plugin registered under the entry-point group that is allowed."""
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in self.deny or (self.allow is not None and entry.name not in self.allow):
                continue
            dist = entry.dist
            where = f"{entry.value} ({dist.name} {dist.version})" if dist else entry.value
            try:
                plugin = entry.load()
            except Exception as exc:  # a broken plugin must not take the orchestrator down
                self._problem(entry.name, f"cannot be imported: {type(exc).__name__}: {exc}")
                continue
            if not self._switched_on(plugin, entry.name):
                self.opt_in_off[entry.name] = where
                continue
            self.register(plugin, entry.name, where)
        wanted = set(self.allow or ()) | (self.enable - self.deny)
        if self.allow is not None:
            wanted &= self.allow
        for missing in sorted(wanted - set(self.loaded) - self.rejected):
            self._problem(missing, "is not installed (no such entry point)")

    def _switched_on(self, plugin: object, name: str) -> bool:
        """Default plugins always; an opt-in one only when named (``--plugin``, ``enable``)."""
        if getattr(plugin, "ORCHESTRATOR_PLUGIN_OPT_IN", False) is not True:
            return True
        return name in self.enable or (self.allow is not None and name in self.allow)

    def register(self, plugin: object, name: str, source: str = "") -> bool:
        """Register ``plugin``; on a bad declaration report it (or raise when strict)."""
        declared = getattr(plugin, "ORCHESTRATOR_PLUGIN_API", PLUGIN_API_VERSION)
        if declared != PLUGIN_API_VERSION:
            return self._problem(
                name,
                f"is written for plugin API {declared}; this orchestrator "
                f"speaks API {PLUGIN_API_VERSION}",
            )
        self._observer_plan = None
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            return self._problem(name, f"declares a hook wrongly: {exc}")
        hooks = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin_name != name:
                    continue
                if impl.hookwrapper or impl.wrapper:
                    self.pm.unregister(name=name)
                    return self._problem(
                        name,
                        f"uses a wrapper for {caller.name}; wrappers are "
                        "not supported (pluggy#320)",
                    )
                hooks.append(caller.name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            return self._problem(name, f"implements a hook that does not exist: {exc}")
        self.loaded[name] = LoadedPlugin(
            name, source or getattr(plugin, "__name__", ""), sorted(hooks)
        )
        return True

    def _problem(self, name: str, message: str) -> bool:
        error = PluginError(name, message)
        if self.strict:
            raise error
        self.report(f"{error}; switched off")
        self.rejected.add(name)
        return False

    def observer_plan(self) -> dict[str, tuple[type, ...]]:
        """Which event types each registered plugin observes (by the hooks it implements), in
        pluggy's order. Worked out once, not per sweep (a daemon starts many): registering a
        plugin (:meth:`register`) is the only way it changes."""
        plan = self._observer_plan
        if plan is None:
            by_name = {t.__name__: t for t in EVENT_TYPES}
            found: dict[str, list[type]] = {}
            for type_name, hook in OBSERVERS.items():
                for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
                    found.setdefault(impl.plugin_name, []).append(by_name[type_name])
            plan = self._observer_plan = {name: tuple(types) for name, types in found.items()}
        return plan

    def scope(self, on_strict_failure: Callable[[str], None] | None = None) -> PluginScope:
        """The hook caller of one sweep; ``on_strict_failure`` stops that sweep."""
        return PluginScope(self, on_strict_failure)


def _coroutine(impl: pluggy.HookImpl) -> Callable[..., Awaitable[Any]]:
    """``impl``'s function, known to be a coroutine function (``_is_coroutine``)."""
    return cast(Callable[..., Awaitable[Any]], impl.function)


def _arguments(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``impl`` names, of those the hook is called with."""
    return {name: kwargs[name] for name in impl.argnames if name in kwargs}


class PluginScope:
    """Calls the plugins' hooks for one sweep and remembers which failed in it.

    A plugin switched off here stays on for every other sweep of the process."""

    def __init__(self, host: PluginHost, on_strict_failure: Callable[[str], None] | None) -> None:
        self.host = host
        self.disabled: set[str] = set()
        self._known: dict[str, list[pluggy.HookImpl]] = {}
        #: Called with a reason when a plugin fails under ``--strict-plugins``.
        self.on_strict_failure = on_strict_failure
        #: Whether each implementation (by id: registered, so alive while the sweep lasts)
        #: is a coroutine function; asked per call.
        self._coroutines: dict[int, bool] = {}

    # ------------------------------------------------------------------ calling
    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """``hook``'s implementations still on in this sweep, in pluggy's order (remembered:
        this is asked several times per run; a plugin switched off forgets them)."""
        known = self._known.get(hook)
        if known is None:
            caller = getattr(self.host.pm.hook, hook)
            known = self._known[hook] = [
                i for i in reversed(caller.get_hookimpls()) if i.plugin_name not in self.disabled
            ]
        return known

    def implements(self, hook: str) -> bool:
        return bool(self._impls(hook))

    def _impl_of(self, name: str, hook: str) -> pluggy.HookImpl | None:
        for impl in self._impls(hook):
            if impl.plugin_name == name:
                return impl
        return None

    async def _call(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> Any:
        """One call, bounded by the host's timeout. A coroutine's bound is asyncio's own
        ``timeout`` (the orchestrator runs on asyncio only): a third of the cost of an anyio
        cancel scope, paid per run by every per-run hook; a plain function's call goes to a
        worker thread under an anyio deadline, which abandons the thread when it passes."""
        if self._is_coroutine(impl):
            async with asyncio.timeout(self.host.timeout):
                return await _coroutine(impl)(**_arguments(impl, kwargs))
        with anyio.fail_after(self.host.timeout):
            return await self._invoke(impl, kwargs)

    def _is_coroutine(self, impl: pluggy.HookImpl) -> bool:
        known = self._coroutines.get(id(impl))
        if known is None:
            known = self._coroutines[id(impl)] = inspect.iscoroutinefunction(impl.function)
        return known

    async def _invoke(self, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
        """Call ``impl`` with the arguments it names: a coroutine on the loop, a plain
        function in a worker thread (so that even a hung one can be abandoned)."""
        args = _arguments(impl, kwargs)
        if self._is_coroutine(impl):
            return await _coroutine(impl)(**args)
        return await anyio.to_thread.run_sync(
            partial(impl.function, **args), abandon_on_cancel=True
        )

    def _failed(self, name: str, hook: str, exc: BaseException) -> None:
        if name in self.disabled:
            return  # concurrent calls failing together: report the plugin once
        if isinstance(exc, TimeoutError):
            what = f"{hook} did not return within {self.host.timeout:g}s"
        else:
            what = f"{hook} raised {type(exc).__name__}: {exc}"
        self.disabled.add(name)
        self._known.clear()
        if self.host.strict:
            message = f"plugin {name!r}: {what}"
            self.host.report(f"{message}; stopping the sweep (--strict-plugins)")
            if self.on_strict_failure is not None:
                self.on_strict_failure(message)
        else:
            self.host.report(f"plugin {name!r}: {what}; switched off for this sweep")

    async def call_first(self, hook: str, **kwargs: Any) -> Any:
        """A decision: implementations in pluggy's order, the first non-None answer wins."""
        for impl in self._impls(hook):
            try:
                result = await self._call(impl, hook, kwargs)
            except Exception as exc:
                self._failed(impl.plugin_name, hook, exc)
                continue
            if result is not None:
                return result
        return None

    async def call_all(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook`` (their answers are ignored)."""
        for impl in self._impls(hook):
            try:
                await self._call(impl, hook, kwargs)
            except Exception as exc:
                self._failed(impl.plugin_name, hook, exc)

    async def start_observers(
        self, bus: EventBus, group: anyio.abc.TaskGroup, ctx: Any
    ) -> list[Subscription]:
        """One subscription and task per observing plugin, started in ``group``; the caller
        waits for them to catch up before deciding how the sweep ends. A plugin is subscribed
        only to the events whose hooks it implements and wants in this sweep (``observes``):
        one that wants none gets no subscription, no task and no deliveries."""
        subscriptions = []
        for name, observed in self.host.observer_plan().items():
            if name in self.disabled:
                continue
            wanted = await self._wanted(name, ctx)
            types = list(observed)
            if wanted is not None:
                types = [t for t in types if OBSERVERS[t.__name__] in wanted]
            if not types or name in self.disabled:
                continue
            subscription = bus.subscribe(types)
            subscriptions.append(subscription)
            group.start_soon(self.observe, name, subscription, ctx)
        return subscriptions

    async def _wanted(self, name: str, ctx: Any) -> set[str] | None:
        """The observer hooks ``name`` wants in this sweep (``observes``); None: all."""
        for impl in self._impls("observes"):
            if impl.plugin_name != name:
                continue
            try:
                answer = await self._call(impl, "observes", {"ctx": ctx})
                return None if answer is None else {str(hook) for hook in answer}
            except Exception as exc:
                self._failed(name, "observes", exc)
                return set()
        return None

    async def observe(self, name: str, subscription: Subscription, ctx: Any) -> None:
        """One plugin's observer task: its events, in order, until the bus closes. What has
        piled up in its stream is handled as one batch, under one timeout."""
        receive = subscription.receive
        try:
            async with receive:
                async for event in receive:
                    batch = [event]
                    with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while len(batch) < MAX_BATCH:
                            batch.append(receive.receive_nowait())
                    if name not in self.disabled:  # a dead plugin's stream is still drained
                        await self._deliver(name, batch, ctx)
                    subscription.handled(len(batch))
        finally:
            subscription.gone()

    async def _deliver(self, name: str, batch: list[Event], ctx: Any) -> None:
        """``batch`` to ``name``'s observer hooks, in order, all within one timeout; the
        first failure switches the plugin off (the rest of the batch is dropped)."""
        hook = ""
        try:
            with anyio.fail_after(self.host.timeout):
                for event in batch:
                    hook = OBSERVERS[type(event).__name__]
                    impl = self._impl_of(name, hook)
                    if impl is None:
                        continue
                    await self._invoke(impl, {"event": event, "ctx": ctx})
        except Exception as exc:
            self._failed(name, hook, exc)
