"""pathRef, urlRef (a real HTTP server on 127.0.0.1), hubRef and inline components."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.exceptions import ComponentRefError, SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec import load as load_module
from tests.conftest import StaticHandler

COMPONENT = """version: 1.1
kind: component
inputs: [{name: lr, type: float, value: 0.1}]
run: {kind: job, container: {command: [train, "--lr={{ lr }}"]}}
"""


def test_url_ref_is_fetched(server: str, write: Callable[..., Path]) -> None:
    StaticHandler.routes["/typed.yaml"] = (200, COMPONENT.encode())
    spec = write(f"version: 1.1\nkind: operation\nurlRef: {server}/typed.yaml\n")
    (run,) = compile_plan(load_spec(spec)).runs()
    assert run.argv == ["train", "--lr=0.1"]


def test_url_ref_http_error_is_clear(server: str, write: Callable[..., Path]) -> None:
    spec = write(f"version: 1.1\nkind: operation\nurlRef: {server}/missing.yaml\n")
    with pytest.raises(ComponentRefError) as info:
        load_spec(spec)
    assert str(info.value) == f"{spec}: urlRef: fetching {server}/missing.yaml returned HTTP 404"


def test_url_ref_size_limit(
    server: str, write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_module, "MAX_FILE_BYTES", 1000)
    StaticHandler.routes["/big.yaml"] = (200, b"# " + b"x" * 5000 + b"\n")
    spec = write(f"version: 1.1\nkind: operation\nurlRef: {server}/big.yaml\n")
    with pytest.raises(ComponentRefError, match="larger than"):
        load_spec(spec)


def test_url_ref_offline_is_clear(write: Callable[..., Path]) -> None:
    spec = write("version: 1.1\nkind: operation\nurlRef: http://127.0.0.1:9/typed.yaml\n")
    with pytest.raises(ComponentRefError) as info:
        load_spec(spec)
    assert "cannot fetch http://127.0.0.1:9/typed.yaml" in str(info.value)
    assert "use pathRef" in str(info.value)


def test_url_ref_errors_in_the_component_name_the_url(
    server: str, write: Callable[..., Path]
) -> None:
    StaticHandler.routes["/bad.yaml"] = (200, COMPONENT.replace("inputs", "inputz").encode())
    spec = write(f"version: 1.1\nkind: operation\nurlRef: {server}/bad.yaml\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert str(info.value).startswith(f"{server}/bad.yaml: inputz: unknown key")


def test_path_ref_is_relative_to_the_file(write: Callable[..., Path], tmp_path: Path) -> None:
    write(COMPONENT, "components/c.yaml")
    spec = write("version: 1.1\nkind: operation\npathRef: ../components/c.yaml\n", "ops/op.yaml")
    (run,) = compile_plan(load_spec(spec)).runs()
    assert run.argv == ["train", "--lr=0.1"]


def test_path_ref_to_an_operation_is_refused(write: Callable[..., Path]) -> None:
    write("version: 1.1\nkind: operation\npathRef: x.yaml\n", "other.yaml")
    spec = write("version: 1.1\nkind: operation\npathRef: other.yaml\n")
    with pytest.raises(ComponentRefError, match="must point at a component"):
        load_spec(spec)


def test_a_ref_with_its_inline_component_uses_the_component(write: Callable[..., Path]) -> None:
    """As Polyaxon (2.16 and 2.18): the component counts as a reference only when no other is
    given, and an operation that has one is not resolved again (``collect_references``)."""
    spec = write(
        "version: 1.1\nkind: operation\npathRef: missing.yaml\ncomponent:\n"
        "  run: {kind: job, container: {command: [x]}}\n"
    )
    assert load_spec(spec).component.run.container.command == ["x"]  # type: ignore[union-attr]


def test_hub_ref_resolves_in_a_local_folder(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(COMPONENT, "hub/trainer.yaml")
    write(COMPONENT.replace("0.1", "0.2"), "hub/trainer/v2.yaml")
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(tmp_path / "hub"))
    spec = write("version: 1.1\nkind: operation\nhubRef: trainer\n")
    assert next(compile_plan(load_spec(spec)).runs()).argv[-1] == "--lr=0.1"
    tagged = write("version: 1.1\nkind: operation\nhubRef: trainer:v2\n", "t.yaml")
    assert next(compile_plan(load_spec(tagged)).runs()).argv[-1] == "--lr=0.2"
    missing = write("version: 1.1\nkind: operation\nhubRef: nope\n", "m.yaml")
    with pytest.raises(ComponentRefError, match="'nope' not found in hub folder"):
        load_spec(missing)


def test_hub_ref_without_a_hub_says_how_to_set_one(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HUB", raising=False)
    spec = write("version: 1.1\nkind: operation\nhubRef: trainer\n")
    with pytest.raises(ComponentRefError, match="ORCHESTRATOR_HUB"):
        load_spec(spec)


def test_dag_ref_is_refused_clearly(write: Callable[..., Path]) -> None:
    spec = write("version: 1.1\nkind: operation\ndagRef: pipeline\n")
    with pytest.raises(ComponentRefError, match="dagRef names a component of the DAG"):
        load_spec(spec)
