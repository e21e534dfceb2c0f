"""orchestrator: run Polyaxon polyaxonfile sweeps on your own machine.

The public API is what ``__all__`` lists; everything else is private and may change.
Heavy modules load on first use so that ``python -m orchestrator --help`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.exceptions import (
    ComponentRefError,
    ExecutorError,
    NotFoundError,
    OrchestratorError,
    PluginError,
    SpecError,
    StoreError,
)

if TYPE_CHECKING:
    from orchestrator.hooks import hookimpl
    from orchestrator.spec import LoadedSpec, Plan, RunSpec, compile_plan, load_spec, load_text

    __version__: str

__all__ = [
    "ComponentRefError",
    "ExecutorError",
    "LoadedSpec",
    "NotFoundError",
    "OrchestratorError",
    "Plan",
    "PluginError",
    "RunSpec",
    "SpecError",
    "StoreError",
    "__version__",
    "compile_plan",
    "hookimpl",
    "load_spec",
    "load_text",
]

_LAZY = {"LoadedSpec", "Plan", "RunSpec", "compile_plan", "load_spec", "load_text"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("orchestrator")
    if name == "hookimpl":
        from orchestrator.hooks import hookimpl

        return hookimpl
    if name in _LAZY:
        from orchestrator import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
