import importlib.metadata

import orchestrator
import orchestrator.exceptions
import orchestrator.hooks
import orchestrator.spec

EXCEPTIONS = {
    "ComponentRefError",
    "ExecutorError",
    "NotFoundError",
    "OrchestratorError",
    "PluginError",
    "SpecError",
    "StoreError",
}
FROM_SPEC = {"LoadedSpec", "Plan", "RunSpec", "compile_plan", "load_spec", "load_text"}


def test_all_is_sorted_and_importable() -> None:
    assert orchestrator.__all__ == sorted(orchestrator.__all__)
    assert set(orchestrator.__all__) == EXCEPTIONS | FROM_SPEC | {"__version__", "hookimpl"}
    for name in EXCEPTIONS:
        error = getattr(orchestrator, name)
        assert error is getattr(orchestrator.exceptions, name)
        assert issubclass(error, orchestrator.OrchestratorError)
    for name in FROM_SPEC:
        assert getattr(orchestrator, name) is getattr(orchestrator.spec, name)
    assert orchestrator.hookimpl is orchestrator.hooks.hookimpl
    assert orchestrator.__version__ == importlib.metadata.version("orchestrator")


def test_public_api_is_pinned() -> None:
    assert set(orchestrator.__all__) == {
        "ComponentRefError",
        "NotFoundError",
        "hookimpl",
        "ExecutorError",
        "LoadedSpec",
        "OrchestratorError",
        "Plan",
        "PluginError",
        "RunSpec",
        "SpecError",
        "StoreError",
        "__version__",
        "compile_plan",
        "load_spec",
        "load_text",
    }
