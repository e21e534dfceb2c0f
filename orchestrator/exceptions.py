"""Every error the orchestrator raises on purpose.

The tree::

    OrchestratorError
    ├── SpecError (also ValueError)     a polyaxonfile or a param is wrong: file, field, expected
    │   └── ComponentRefError           a pathRef/urlRef/hubRef cannot be resolved
    ├── ExecutorError                   a run could not be started or controlled
    ├── PluginError                     a plugin misbehaved; ``.plugin`` names it
    ├── SearchError                     an adaptive search cannot go on (its tuner failed,
    │                                   hung or answered something that is no suggestion)
    ├── StoreError                      the journal or a run folder cannot be read or written
    ├── NotFoundError (also LookupError) no sweep or run matches what was asked for
    ├── SweepBusyError                  the sweep is still running (resume/rerun must wait)
    └── UnavailableError                no new work now: the daemon is shutting down, or the
                                        journal cannot write what was asked (none of it done)

The CLI turns any of these into one line on stderr and an exit code (2 for bad input:
SpecError, NotFoundError, StoreError; 1 for the rest); a traceback is a bug.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousRefError",
    "ComponentRefError",
    "ExecutorError",
    "NotFoundError",
    "OrchestratorError",
    "PluginError",
    "SearchError",
    "SpecError",
    "StoreError",
    "SweepBusyError",
    "UnavailableError",
]


class OrchestratorError(Exception):
    """Root of every error raised on purpose by the orchestrator."""


class SpecError(OrchestratorError, ValueError):
    """A polyaxonfile, a component or a parameter is invalid.

    ``str()`` gives the one-line message the CLI prints: ``file: field: what was expected``.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file = file
        self.field = field
        self.detail = message
        super().__init__(message)

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join([*parts, self.detail])

    def with_file(self, file: str) -> SpecError:
        """Return this error located in ``file`` unless it already names one."""
        if self.file is None:
            self.file = file
        return self

    def under(self, prefix: str) -> SpecError:
        """Return this error with ``prefix`` prepended to its field path."""
        if not prefix:
            return self
        if self.field is None:
            self.field = prefix
        elif self.field.startswith("["):
            self.field = prefix + self.field
        else:
            self.field = f"{prefix}.{self.field}"
        return self


class ComponentRefError(SpecError):
    """A component reference (pathRef, urlRef, hubRef, dagRef) cannot be resolved."""


class ExecutorError(OrchestratorError):
    """A run could not be started, watched or stopped."""


class PluginError(OrchestratorError):
    """A plugin raised, hung or declared a hook wrongly; names the plugin."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


class SearchError(OrchestratorError):
    """An adaptive search cannot suggest anything more: the user's tuner failed, timed out or
    printed suggestions that are not a list of configurations. The message is one line; the
    sweep ends failed with it (the runs already finished stay as they are)."""


class StoreError(OrchestratorError):
    """The journal or a run folder cannot be read or written."""


class NotFoundError(OrchestratorError, LookupError):
    """No sweep or run matches an id, a prefix or ``last`` (or more than one does)."""


class AmbiguousRefError(NotFoundError):
    """An id prefix that matches more than one sweep or run: the user must give more
    characters (the API answers 400; the CLI exits 2 like any other bad reference)."""


class SweepBusyError(OrchestratorError):
    """The sweep is still running: it cannot be resumed or re-run until it ends or is stopped.

    Not a user error in the spec: the same command succeeds later (exit code 1, not 2)."""


class UnavailableError(OrchestratorError):
    """No new work is taken now: the daemon is shutting down, or the journal cannot write
    what was asked (a sweep's start, added configurations), so none of it was done (the API
    answers 503; the CLI exits 1)."""
