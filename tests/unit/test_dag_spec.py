"""Pipelines' spec layer (``orchestrator/spec/dag.py``): the graph, Polyaxon's reference rules,
node specs with upstream values, conditions; through real files."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec import models as m
from orchestrator.spec.dag import (
    TRIGGERS,
    DagPlan,
    Upstream,
    compile_dag,
    condition_holds,
    display_spec,
    is_dag,
    node_spec,
)
from orchestrator.store.layout import run_paths

CHAIN = """
version: 1.1
kind: component
name: chain
inputs:
- {name: rate, type: float, value: 0.5}
run:
  kind: dag
  concurrency: 2
  earlyStopping:
  - {kind: failure_early_stopping, percent: 50}
  operations:
  - name: prepare
    dagRef: prep
    params:
      size: {ref: dag, value: inputs.rate}
  - name: train
    dagRef: train
    params:
      data: {ref: ops.prepare, value: outputs.data}
      scale: {ref: ops.prepare, value: outputs.scale}
    conditions: "{{ scale > 1 }}"
  - name: report
    dagRef: report
    dependencies: [train]
    trigger: all_done
    skipOnUpstreamSkip: true
    params:
      note: "{{ ops.train.outputs.loss }}"
  components:
  - name: prep
    inputs: [{name: size, type: float}]
    outputs: [{name: data, type: path}, {name: scale, type: int}]
    run: {kind: job, container: {command: [echo, "{{ size }}"]}}
  - name: train
    inputs: [{name: data, type: str}, {name: scale, type: int}]
    outputs: [{name: loss, type: float}]
    run: {kind: job, container: {command: [echo, "{{ data }}", "--scale={{ scale }}"]}}
  - name: report
    inputs: [{name: note, type: str}]
    run: {kind: job, container: {command: [echo, "{{ note }}"]}}
"""


def write(tmp_path: Path, text: str, name: str = "dag.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def plan_of(tmp_path: Path, text: str, **overrides: str) -> DagPlan:
    return compile_dag(load_spec(write(tmp_path, text)), overrides)


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        compile_dag(load_spec(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def dag_of(operations: str, components: str = "") -> str:
    """A DAG file with the given ``operations`` and ``components`` (YAML, indented 2)."""
    return (
        "version: 1.1\nkind: component\nname: p\nrun:\n  kind: dag\n  operations:\n"
        + textwrap.indent(textwrap.dedent(operations), "  ")
        + ("  components:\n" + textwrap.indent(textwrap.dedent(components), "  "))
    )


JOB = """
- name: job
  inputs: [{name: x, type: float, isOptional: true}, {name: xs, type: float, isList: true,
            isOptional: true}]
  outputs: [{name: loss, type: float}, {name: losses, type: float, isList: true},
            {name: path, type: path}, {name: untyped}]
  run: {kind: job, container: {command: [echo, "{{ x }}"]}}
"""


def test_graph_order_trigger_and_sections(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN)
    assert is_dag(plan.spec)
    assert plan.order == ["prepare", "train", "report"]
    assert plan.levels == [["prepare"], ["train"], ["report"]]
    assert plan.nodes["train"].upstream == ("prepare",)
    assert plan.nodes["report"].upstream == ("train",)  # dependencies and the template
    assert plan.nodes["report"].trigger == "all_done" and plan.nodes["train"].trigger in TRIGGERS
    assert plan.nodes["report"].skip_on_upstream_skip
    assert plan.downstream("prepare") == ["train"]
    assert plan.concurrency == 2 and len(plan.early_stopping) == 1
    assert plan.inputs == {"rate": 0.5}
    assert not plan.nodes["train"].is_sweep


def test_overrides_reach_the_dag_inputs(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN, rate="0.75")
    assert plan.inputs == {"rate": 0.75}
    spec = node_spec(plan, "prepare", {})
    assert next(iter(compile_plan(spec).runs())).argv == ["echo", "0.75"]


def test_compile_plan_on_a_dag_points_to_compile_dag(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="compile_dag"):
        compile_plan(load_spec(write(tmp_path, CHAIN)))


def test_node_spec_takes_upstream_outputs_typed_by_the_input(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN)
    prepared = Upstream("prepare", "succeeded", {"size": 0.5}, {"data": "/d", "scale": "3"}, "u1")
    spec = node_spec(plan, "train", {"prepare": prepared})
    run = next(iter(compile_plan(spec).runs()))
    assert run.params == {"data": "/d", "scale": 3}
    assert run.argv == ["echo", "/d", "--scale=3"]
    assert spec.operation.dependencies is None and spec.operation.conditions is None


def test_template_reads_ops_context(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN)
    trained = Upstream("train", "succeeded", {}, {"loss": 0.25}, "u2")
    run = next(iter(compile_plan(node_spec(plan, "report", {"train": trained})).runs()))
    assert run.argv == ["echo", "0.25"]


def test_missing_upstream_output_is_named(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN)
    prepared = Upstream("prepare", "succeeded", {}, {"data": "/d"}, "u1")
    with pytest.raises(SpecError, match=r"params\.scale\.value: operation 'prepare' gave no"):
        node_spec(plan, "train", {"prepare": prepared})


@pytest.mark.parametrize(("scale", "holds"), [(3, True), (1, False)])
def test_conditions_render_with_the_node_params(tmp_path: Path, scale: int, holds: bool) -> None:
    plan = plan_of(tmp_path, CHAIN)
    prepared = Upstream("prepare", "succeeded", {}, {"data": "/d", "scale": scale}, "u1")
    assert condition_holds(plan, "train", {"prepare": prepared}) is holds
    assert condition_holds(plan, "prepare", {})  # no conditions


def test_condition_that_is_no_boolean_names_the_field(tmp_path: Path) -> None:
    text = dag_of(
        """
        - {name: a, dagRef: job}
        - {name: b, dagRef: job, dependencies: [a], conditions: "{{ ops.a.status }}"}
        """,
        JOB,
    )
    plan = plan_of(tmp_path, text)
    done = Upstream("a", "succeeded", {}, {}, "u")
    with pytest.raises(SpecError, match=r"run\.operations\[1\]\.conditions: expected the"):
        condition_holds(plan, "b", {"a": done})


def test_display_spec_shows_placeholders(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CHAIN)
    run = next(iter(compile_plan(display_spec(plan, "train")).runs()))
    assert run.params == {
        "data": "<ops.prepare.outputs.data>",
        "scale": "<ops.prepare.outputs.scale>",
    }
    assert run.argv == ["echo", "<ops.prepare.outputs.data>", "--scale=<ops.prepare.outputs.scale>"]


def test_dag_cache_is_inherited(tmp_path: Path) -> None:
    text = CHAIN.replace("name: chain\n", "name: chain\ncache: {disable: true}\n")
    plan = plan_of(tmp_path, text)
    spec = node_spec(plan, "prepare", {})
    assert spec.operation.cache is not None and spec.operation.cache.disable


def test_hub_ref_with_its_component_uses_the_component(tmp_path: Path) -> None:
    text = dag_of(
        """
        - name: build
          hubRef: kaniko
          component: {name: kaniko, run: {kind: job, container: {command: [echo, built]}}}
        """,
    )
    plan = plan_of(tmp_path, text)
    assert next(iter(compile_plan(node_spec(plan, "build", {})).runs())).argv == ["echo", "built"]


def test_path_ref_resolves_next_to_the_dag_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    component = "version: 1.1\nkind: component\ninputs: [{name: x, type: float}]\n"
    write(
        tmp_path / "sub", component + "run: {kind: job, container: {command: [echo]}}\n", "job.yaml"
    )
    text = dag_of("- {name: a, pathRef: sub/job.yaml, params: {x: 1.5}}\n")
    plan = plan_of(tmp_path, text)
    assert plan.nodes["a"].component_source == str(tmp_path / "sub" / "job.yaml")
    assert plan.nodes["a"].base_dir == tmp_path / "sub"


A_THEN_B = "- {name: a, dagRef: job}\n- {name: b, dagRef: job, %s}"


def b_param(x: str) -> str:
    """Two operations, ``b`` giving its input ``x`` the param ``x`` (YAML flow)."""
    return A_THEN_B % f"params: {{x: {x}}}"


CYCLE = "- {name: a, dagRef: job, dependencies: [b]}\n- {name: b, dagRef: job, dependencies: [a]}"
JOIN_INTO_SCALAR = "joins: [{query: 'status: succeeded', params: {x: {value: outputs.loss}}}]"
SWEEP_THEN_REF = (
    "- {name: a, dagRef: job, matrix: {kind: grid, params: {x: {kind: choice, value: [1.0]}}}}\n"
    "- {name: b, dagRef: job, params: {x: {ref: ops.a, value: outputs.loss}}}"
)


@pytest.mark.parametrize(
    ("operations", "fragment"),
    [
        ("", "it has no ops"),
        ("- {name: a, dagRef: nope}", r"dagRef: operation 'a' requires a component .* 'nope'"),
        ("- {name: a, dagRef: job}\n- {name: a, dagRef: job}", "multiple ops with the same name"),
        ("- {dagRef: job}", r"operations\[0\]\.name: an operation of a DAG needs a name"),
        (CYCLE, "not acyclic: a → b → a"),
        ("- {name: a, dagRef: job, dependencies: [zz]}", "orphan ops: 'zz'"),
        (
            b_param("{ref: ops.a, value: outputs.nope}"),
            "'outputs.nope', but operation 'a' has no such information",
        ),
        (b_param("{ref: ops.a, value: outputs.untyped}"), "does not correspond to the type"),
        (b_param("{ref: ops.a, value: outputs.losses}"), r"is not a list \(isList\)"),
        (b_param("{ref: foo.a, value: outputs.loss}"), "could not parse ref 'foo.a'"),
        (b_param("{ref: ops.a, value: foo.loss}"), "'foo' must be one of"),
        (b_param("{ref: ops.a, value: 3}"), "must be of type string when a ref is provided"),
        (b_param("{ref: runs.0f0e, value: outputs.loss}"), "refs to runs outside this DAG"),
        (A_THEN_B % JOIN_INTO_SCALAR, "add isList: true"),
        (SWEEP_THEN_REF, "'a' is a sweep"),
        (
            SWEEP_THEN_REF.replace(
                "{ref: ops.a, value: outputs.loss}", "'{{ ops.a.outputs.loss }}'"
            ),
            r"params\.x\.value: 'a' is a sweep",
        ),
        (A_THEN_B % "joins: [{query: 'metrics.loss'}]", r"joins\[0\]\.query: expected"),
        (A_THEN_B % "conditions: '{{ x > }}'", r"\[1\]\.conditions: template syntax error"),
        (
            "- {name: a, dagRef: job, params: {x: {value: abc}}}",
            r"run\.operations\[0\]\.params\.x\.value: operation 'a': expected float",
        ),
    ],
)
def test_plan_time_errors(tmp_path: Path, operations: str, fragment: str) -> None:
    message = error_of(tmp_path, dag_of(operations + "\n", JOB))
    assert re.search(fragment, message), message


def test_join_into_a_list_input_is_accepted(tmp_path: Path) -> None:
    text = dag_of(
        """
        - {name: a, dagRef: job}
        - name: b
          dagRef: job
          dependencies: [a]
          joins:
          - {query: "status: succeeded", sort: "-metrics.loss", limit: 2,
             params: {xs: {value: outputs.loss}}}
        """,
        JOB,
    )
    plan = plan_of(tmp_path, text)
    assert plan.warnings == []
    joined = {"xs": m.Param(value=[1, 2.5])}
    run = next(iter(compile_plan(node_spec(plan, "b", {}, joined)).runs()))
    assert run.params["xs"] == [1.0, 2.5]


def test_component_errors_name_the_component_in_the_dag(tmp_path: Path) -> None:
    text = dag_of(
        "- {name: a, dagRef: bad}\n",
        "- {name: bad, run: {kind: job, container: {command: ['{{ nope }}']}}}\n",
    )
    message = error_of(tmp_path, text)
    assert (
        "run.components[0].run.container.command[0]: operation 'a': undefined variable 'nope'"
        in message
    )


def test_a_top_level_dag_ref_stays_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1.1\nkind: operation\ndagRef: x\n")
    with pytest.raises(SpecError, match="dagRef names a component of the DAG"):
        load_spec(path)


def test_a_matrix_over_a_dag_is_refused(tmp_path: Path) -> None:
    text = CHAIN.replace("kind: component\n", "kind: component\n", 1)
    op = write(tmp_path, text, "chain.yaml")
    path = write(
        tmp_path,
        f"version: 1.1\nkind: operation\npathRef: {op.name}\n"
        "matrix: {kind: grid, params: {rate: {kind: choice, value: [0.1, 0.2]}}}\n",
        "op.yaml",
    )
    with pytest.raises(SpecError, match="a matrix over a whole DAG is not supported yet"):
        compile_dag(load_spec(path))


def test_upstream_from_templates_conditions_and_events(tmp_path: Path) -> None:
    """Polyaxon counts dependencies, ``ref: ops.X`` params and events; operations a template
    or the conditions name are upstream too here (they must have finished to be read)."""
    text = dag_of(
        """
        - {name: a, dagRef: job}
        - {name: b, dagRef: job, params: {x: "{{ ops.a.outputs.loss }}"}}
        - {name: c, dagRef: job, conditions: "{{ ops['b'].status == 'succeeded' }}"}
        - {name: d, dagRef: job, events: [{ref: ops.c, kinds: [run_status_done]}]}
        """,
        JOB,
    )
    plan = plan_of(tmp_path, text)
    assert [plan.nodes[n].upstream for n in "abcd"] == [(), ("a",), ("b",), ("c",)]
    assert plan.order == ["a", "b", "c", "d"]
    done = Upstream("b", "succeeded", {}, {}, "u")
    assert condition_holds(plan, "c", {"b": done})
    assert not condition_holds(plan, "c", {"b": Upstream("b", "failed", {}, {}, "u")})


def test_joins_without_upstream_warn(tmp_path: Path) -> None:
    text = dag_of(
        """
        - name: b
          dagRef: job
          joins: [{query: "status: succeeded", params: {xs: {value: outputs.loss}}}]
        """,
        JOB,
    )
    (warning,) = plan_of(tmp_path, text).warnings
    assert "depends on nothing" in warning


def test_an_operation_file_runs_a_dag_component_from_another_folder(tmp_path: Path) -> None:
    """pathRefs inside the DAG resolve next to the file that holds the DAG (Polyaxon's
    ``collect_dag_components`` path context); the operation's params feed the DAG's inputs."""
    (tmp_path / "lib").mkdir()
    step = "version: 1.1\nkind: component\ninputs: [{name: x, type: float}]\n"
    step += "run: {kind: job, container: {command: [echo, '{{ x }}']}}\n"
    write(tmp_path / "lib", step, "step.yaml")
    dag = (
        "version: 1.1\nkind: component\ninputs: [{name: rate, type: float}]\n"
        "run:\n  kind: dag\n  environment: {nodeSelector: {a: b}}\n  operations:\n"
        "  - {name: a, pathRef: step.yaml, params: {x: {ref: dag, value: inputs.rate}}}\n"
    )
    write(tmp_path / "lib", dag, "pipeline.yaml")
    op = write(
        tmp_path,
        "version: 1.1\nkind: operation\npathRef: lib/pipeline.yaml\nparams: {rate: 0.3}\n",
        "run.yaml",
    )
    plan = compile_dag(load_spec(op))
    assert plan.source == str(tmp_path / "lib" / "pipeline.yaml")
    assert plan.spec.ignored == ["run.environment"]
    run = next(iter(compile_plan(node_spec(plan, "a", {})).runs()))
    assert run.argv == ["echo", "0.3"]


#: Polyaxon's guide "automation-dag" pipeline (its urlRef/hubRef components written inline).
GUIDE = """
version: 1.1
kind: component
name: quick-dag
inputs:
- {name: max_loss, type: float, value: 0.1}
- {name: top, type: int, value: 5}
run:
  kind: dag
  operations:
  - name: experiment
    dagRef: typed
    params:
      learning_rate: {value: 0.005}
      epochs: {value: 10}
  - name: tune
    dagRef: typed
    params:
      upstream_loss: {ref: ops.experiment, value: outputs.loss, contextOnly: true}
      max_loss: {ref: dag, value: inputs.max_loss, contextOnly: true}
    conditions: "{{ upstream_loss > max_loss }}"
    matrix:
      kind: random
      concurrency: 2
      numRuns: 20
      params:
        learning_rate: {kind: linspace, value: 0.001:0.1:5}
        dropout: {kind: choice, value: [0.25, 0.3]}
        epochs: {kind: choice, value: [5, 10]}
  - name: best_model
    dependencies: [experiment, tune]
    trigger: all_done
    params:
      top: {ref: dag, value: inputs.top, contextOnly: true}
    component:
      run:
        kind: job
        container:
          workingDir: "{{ globals.artifacts_path }}"
          command: [python3, best_models.py]
          args: ["--project={{ globals.project_name }}", "--top={{ top }}"]
  components:
  - name: typed
    inputs:
    - {name: learning_rate, type: float, value: 0.001}
    - {name: dropout, type: float, value: 0.25}
    - {name: epochs, type: int}
    outputs:
    - {name: loss, type: float}
    run:
      kind: job
      container:
        command: [python3, model.py, "--lr={{ learning_rate }}", "--dropout={{ dropout }}",
                  "--epochs={{ epochs }}"]
"""


@pytest.mark.parametrize(("loss", "tunes"), [(0.05, False), (0.5, True)])
def test_polyaxon_guide_condition_on_context_only_refs(
    tmp_path: Path, loss: float, tunes: bool
) -> None:
    """``conditions: "{{ upstream_loss > max_loss }}"`` reads contextOnly params fed by
    ``ref: ops.experiment`` and ``ref: dag``, as Polyaxon's guide writes it."""
    plan = compile_dag(load_spec(write(tmp_path, GUIDE)), paths=run_paths(tmp_path / "home"))
    assert plan.levels == [["experiment"], ["tune"], ["best_model"]]
    assert plan.nodes["best_model"].upstream == ("experiment", "tune")
    experiment = Upstream("experiment", "succeeded", {}, {"loss": loss}, "u")
    assert condition_holds(plan, "tune", {"experiment": experiment}) is tunes
    spec = node_spec(plan, "best_model", {"experiment": experiment})
    run = next(iter(compile_plan(spec, paths=run_paths(tmp_path / "home")).runs()))
    assert run.argv == ["python3", "best_models.py", "--project=local", "--top=5"]


def test_a_bad_dag_param_names_the_operation_file(tmp_path: Path) -> None:
    write(tmp_path, CHAIN, "chain.yaml")
    op = write(
        tmp_path,
        "version: 1.1\nkind: operation\npathRef: chain.yaml\nparams: {rate: fast}\n",
        "op.yaml",
    )
    with pytest.raises(SpecError, match=r"op\.yaml: params\.rate\.value: expected float"):
        compile_dag(load_spec(op))
    with pytest.raises(SpecError, match=r"op\.yaml: -P rate: expected float"):
        compile_dag(load_spec(op), {"rate": "slow"})


def test_rendered_context_values_are_read_back_as_values(tmp_path: Path) -> None:
    """``{{ ops.a.outputs.loss }}`` into a contextOnly param and a condition: a number, not
    the text of one (``"10.0" > "9.0"`` is false as text)."""
    text = dag_of(
        """
        - {name: a, dagRef: job}
        - name: b
          dagRef: job
          params:
            seen: {value: "{{ ops.a.outputs.loss }}", contextOnly: true}
          conditions: "{{ seen > 9.0 }}"
        """,
        JOB,
    )
    plan = plan_of(tmp_path, text)
    assert plan.nodes["b"].upstream == ("a",)
    done = Upstream("a", "succeeded", {}, {"loss": 10.0}, "u")
    assert condition_holds(plan, "b", {"a": done})
    params = node_spec(plan, "b", {"a": done}).operation.params
    assert params is not None and params["seen"].value == 10.0
