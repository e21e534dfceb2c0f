import orchestrator


def test_all_is_sorted_and_importable() -> None:
    assert orchestrator.__all__ == sorted(orchestrator.__all__)
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None


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
