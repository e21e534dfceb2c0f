"""Params, precedence, required inputs, mapping checks and rendering, through real files."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import RunSpec, compile_plan, load_spec
from orchestrator.store.layout import run_paths

COMPONENT = """
version: 1.1
kind: component
name: train
inputs:
- {name: lr, type: float, value: 0.1}
- {name: epochs, type: int}
- {name: check, type: bool, value: true}
- {name: fast, type: bool, isFlag: true, value: false}
- {name: opt, type: str, isOptional: true}
- {name: tag, type: str, value: "10"}
outputs:
- {name: loss, type: float}
run:
  kind: job
  container:
    command: [python3, train.py]
    args: ["--lr={{ lr }}", "--epochs={{ epochs }}", "{{ fast }}", "{{ params.check.as_arg }}",
           "--tag={{ tag }}", "{{ params.opt.as_arg }}"]
"""


def runs(path: Path, overrides: dict[str, str] | None = None) -> list[RunSpec]:
    return list(compile_plan(load_spec(path), overrides).runs())


def error(path: Path, overrides: dict[str, str] | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        runs(path, overrides)
    return info.value


@pytest.fixture
def component(write: Callable[..., Path]) -> Path:
    return write(COMPONENT, "component.yaml")


def test_mapping_values_win_over_params_and_defaults(
    write: Callable[..., Path], component: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        params: {lr: {value: 0.5}, epochs: {value: 1}}
        matrix: {kind: mapping, values: [{epochs: 3}, {lr: 0.2, epochs: "4", extra: "5"}]}
        pathRef: component.yaml
    """)
    first, second = runs(spec)
    assert first.params == {
        "lr": 0.5,
        "epochs": 3,
        "check": True,
        "fast": False,
        "opt": None,
        "tag": "10",
    }
    assert second.params["lr"] == 0.2
    assert second.params["epochs"] == 4
    assert second.params["extra"] == 5, "pass-through values go through parse_expression"
    assert first.argv == [
        "python3",
        "train.py",
        "--lr=0.5",
        "--epochs=3",
        "--check=true",
        "--tag=10",
    ]


def test_p_overrides_params_and_is_coerced(write: Callable[..., Path], component: Path) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        params: {epochs: {value: 1}}
        pathRef: component.yaml
    """)
    (run,) = runs(spec, {"epochs": "7", "fast": "yes", "opt": "sgd"})
    assert run.params["epochs"] == 7
    assert run.argv[4:] == ["--fast", "--check=true", "--tag=10", "--opt=sgd"]


def test_p_with_wrong_type_names_the_flag(write: Callable[..., Path], component: Path) -> None:
    spec = write("version: 1.1\nkind: operation\npathRef: component.yaml\n")
    err = error(spec, {"epochs": "5.5"})
    assert str(err) == f"{spec}: -P epochs: expected int, got 5.5"


def test_every_mapping_entry_is_type_checked_up_front(
    write: Callable[..., Path], component: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{epochs: 5}, {epochs: 5.5}]}
        pathRef: component.yaml
    """)
    with pytest.raises(SpecError) as info:
        compile_plan(load_spec(spec))
    assert str(info.value) == f"{spec}: matrix.values[1].epochs: expected int, got 5.5"


def test_missing_required_input(write: Callable[..., Path], component: Path) -> None:
    spec = write("version: 1.1\nkind: operation\npathRef: component.yaml\n")
    assert "input 'epochs' is required, no param was passed" in str(error(spec))


def test_required_input_missing_from_one_mapping_entry(
    write: Callable[..., Path], component: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{epochs: 5}, {lr: 0.2}]}
        pathRef: component.yaml
    """)
    err = error(spec)
    assert err.field == "matrix.values[1]"
    assert "'epochs' is required" in str(err)


def test_unexpected_param_is_an_error_unless_context_only(
    write: Callable[..., Path], component: Path
) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        params: {epochs: {value: 1}, seed: {value: 3}}
        pathRef: component.yaml
    """)
    assert "params.seed: no input or output named 'seed'" in str(error(spec))
    ok = write(
        """
        version: 1.1
        kind: operation
        params: {epochs: {value: 1}, seed: {value: 3, contextOnly: true}}
        pathRef: component.yaml
    """,
        "ok.yaml",
    )
    (run,) = runs(ok)
    assert run.params["seed"] == 3
    assert str(error(ok, {"nope": "1"})).endswith("-P nope: no input or output named 'nope'")


def test_short_form_params(write: Callable[..., Path], component: Path) -> None:
    spec = write("version: 1.1\nkind: operation\nparams: {epochs: 2}\npathRef: component.yaml\n")
    assert runs(spec)[0].params["epochs"] == 2


def test_is_flag_only_on_bool(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: component
        inputs: [{name: n, type: int, isFlag: true, value: 1}]
        run: {kind: job, container: {command: [x]}}
    """)
    err = error(spec)
    assert err.field == "inputs[0].isFlag"
    assert "isFlag needs type bool" in str(err)


def test_value_with_is_optional_false_is_rejected(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: component
        inputs: [{name: n, type: int, value: 1, isOptional: false}]
        run: {kind: job, container: {command: [x]}}
    """)
    assert error(spec).field == "inputs[0].isOptional"


def test_validation_rules(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{n: 5}, {n: 50}]}
        component:
          version: 1.1
          kind: component
          inputs:
          - {name: n, type: int, validation: {ge: 1, le: 10}}
          - {name: mode, type: str, value: fast, validation: {options: [fast, slow]}}
          - {name: word, type: str, value: abc, validation: {regex: "^[a-z]+$", maxLength: 5}}
          run: {kind: job, container: {command: [x, "{{ n }}"]}}
    """)
    err = error(spec)
    assert str(err) == f"{spec}: matrix.values[1].n: expected a value <= 10, got 50"
    bad_option = write(
        spec.read_text().replace("value: fast, validation", "value: medium, validation"),
        "b.yaml",
    )
    assert "expected one of ['fast', 'slow'], got 'medium'" in str(error(bad_option))


def test_grid_values_must_fit_the_input_type(write: Callable[..., Path], component: Path) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix:
          kind: grid
          params: {epochs: {kind: linspace, value: "1:2:3"}}
        pathRef: component.yaml
    """)
    err = error(spec)
    assert err.field == "matrix.params.epochs"
    assert "expected int, got 1.5" in str(err)


def test_numeric_kind_needs_numeric_input(write: Callable[..., Path], component: Path) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        params: {epochs: {value: 1}}
        matrix: {kind: grid, params: {tag: {kind: range, value: "1:3:1"}}}
        pathRef: component.yaml
    """)
    assert error(spec).field == "matrix.params.tag.kind"


def test_grid_over_pass_through_key(write: Callable[..., Path], component: Path) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        params: {epochs: {value: 1}}
        matrix: {kind: grid, params: {seed: {kind: choice, value: [1, 2]}}}
        pathRef: component.yaml
    """)
    assert [r.params["seed"] for r in runs(spec)] == [1, 2]


def test_component_alone_runs_once(component: Path) -> None:
    with pytest.raises(SpecError):
        runs(component)
    (run,) = runs(component, {"epochs": "2"})
    assert run.index == 0


def test_globals_point_into_the_home_folder(write: Callable[..., Path], tmp_path: Path) -> None:
    spec = write("""
        version: 1.1
        kind: component
        run:
          kind: job
          container:
            workingDir: "{{ globals.artifacts_path }}/code"
            command: [echo, "{{ globals.uuid }}", "{{ globals.run_outputs_path }}"]
            env: [{name: OUT, value: "{{ globals.run_outputs_path }}"}, {name: N, value: 3}]
    """)
    plan = compile_plan(load_spec(spec), paths=run_paths(tmp_path / "home"))
    (run,) = plan.runs()
    outputs = tmp_path / "home" / "runs" / run.uuid / "outputs"
    assert run.argv == ["echo", run.uuid, str(outputs)]
    assert run.env == {"OUT": str(outputs), "N": "3"}
    assert run.working_dir == str(tmp_path / "home" / "runs" / run.uuid / "artifacts" / "code")


def test_undefined_variable_names_it_and_the_file(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: component
        inputs: [{name: learning_rate, type: float, value: 0.1}]
        run: {kind: job, container: {command: [x, "{{ learnig_rate }}"]}}
    """)
    assert str(error(spec)) == (
        f"{spec}: run.container.command[1]: undefined variable 'learnig_rate'"
    )


def test_mapping_key_absent_from_one_entry_renders_empty(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{a: 1, b: 2}, {a: 3}]}
        component:
          version: 1.1
          kind: component
          run: {kind: job, container: {command: [x, "{{ a }}", "b={{ b }}"]}}
    """)
    assert [r.argv for r in runs(spec)] == [["x", "1", "b=2"], ["x", "3", "b="]]


def test_as_args_include_inputs_then_pass_through(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{seed: 1}]}
        component:
          version: 1.1
          kind: component
          inputs:
          - {name: lr, type: float, value: 0.01}
          - {name: check, type: bool, value: true}
          - {name: verbose, type: bool, isFlag: true, value: true}
          - {name: opt, type: str, isOptional: true}
          run: {kind: job, container: {command: [train], args: "{{ params.as_args }}"}}
    """)
    (run,) = runs(spec)
    assert run.argv == ["train", "--lr=0.01", "--check=true", "--verbose", "--seed=1"]


def test_config_hash_is_stable_and_sensitive(write: Callable[..., Path], component: Path) -> None:
    spec = write("""
        version: 1.1
        kind: operation
        matrix: {kind: mapping, values: [{epochs: 1}, {epochs: 2}, {epochs: 1}]}
        pathRef: component.yaml
    """)
    a, b, c = runs(spec)
    assert a.config_hash == c.config_hash != b.config_hash
    assert a.uuid != c.uuid


def test_reserved_io_names(write: Callable[..., Path]) -> None:
    spec = write("""
        version: 1.1
        kind: component
        inputs: [{name: params, type: int, value: 1}]
        run: {kind: job, container: {command: [x]}}
    """)
    assert error(spec).field == "inputs[0].name"


def test_dag_runs_are_refused_clearly(write: Callable[..., Path]) -> None:
    spec = write("version: 1.1\nkind: component\nrun: {kind: dag, operations: []}\n")
    assert error(spec).field == "run.kind"


def params_of(run: RunSpec) -> dict[str, Any]:
    return run.params
