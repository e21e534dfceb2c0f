from typing import Any

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode, to_camel


def op(**extra: Any) -> dict[str, Any]:
    return {"version": 1.1, "kind": "operation", **extra}


def error_of(data: Any) -> str:
    with pytest.raises(SpecError) as info:
        decode(data, m.Polyaxonfile)
    return str(info.value)


def test_camel_and_snake_case_are_both_accepted() -> None:
    grid = {"kind": "grid", "params": {"a": {"kind": "choice", "value": [1]}}}
    camel = decode(op(matrix={**grid, "numRuns": 3}), m.Polyaxonfile)
    snake = decode(op(matrix={**grid, "num_runs": 3}), m.Polyaxonfile)
    assert camel == snake
    assert camel.matrix.num_runs == 3


def test_same_key_in_both_spellings_is_an_error() -> None:
    grid = {"kind": "grid", "params": {}, "numRuns": 1, "num_runs": 2}
    assert "given twice" in error_of(op(matrix=grid))


def test_unknown_top_level_key_names_the_key() -> None:
    message = error_of(op(foo=1))
    assert message.startswith("foo: unknown key; expected one of:")


def test_unknown_nested_key_has_its_full_path() -> None:
    data = op(matrix={"kind": "mapping", "values": [], "concurency": 2})
    assert error_of(data).startswith("matrix.concurency: unknown key")


def test_unknown_key_inside_a_dict_of_structs_names_the_dict_key() -> None:
    data = op(matrix={"kind": "grid", "params": {"lr": {"kind": "choice", "values": [1]}}})
    assert error_of(data).startswith("matrix.params.lr.values: unknown key")


def test_wrong_type_names_field_and_types() -> None:
    data = op(matrix={"kind": "grid", "params": {}, "numRuns": "many"})
    assert error_of(data) == "matrix.numRuns: expected int, got str"


def test_numeric_strings_are_coerced_like_pydantic_lax_mode() -> None:
    data = op(matrix={"kind": "grid", "params": {}, "numRuns": "3"})
    assert decode(data, m.Polyaxonfile).matrix.num_runs == 3


def test_unknown_kind_lists_the_known_ones() -> None:
    message = error_of(op(matrix={"kind": "grdi", "params": {}}))
    assert message.startswith("matrix.kind: expected one of: bayes, grid, hyperband")
    assert "'grdi'" in message


def test_missing_kind_in_a_tagged_union() -> None:
    assert error_of(op(matrix={"params": {}})).startswith("matrix.kind: required key missing")


def test_missing_required_field() -> None:
    data = op(matrix={"kind": "random", "params": {}})
    assert error_of(data) == "matrix.numRuns: required key missing"


def test_list_items_have_indexes_in_the_path() -> None:
    data = {
        "version": 1.1,
        "kind": "component",
        "run": {"kind": "job", "container": {"env": [{"name": "A"}, {"nme": "B"}]}},
    }
    assert error_of(data).startswith("run.container.env[1].nme: unknown key")


def test_every_section_is_modelled() -> None:
    data = op(
        name="x",
        description="d",
        tags=["a"],
        presets=["p"],
        queue="q",
        namespace="n",
        cost=1.5,
        isApproved=True,
        cache={"disable": False, "ttl": 10, "io": ["lr"], "sections": ["init"]},
        termination={"maxRetries": 2, "ttl": 5, "timeout": 60},
        plugins={"collectLogs": True, "notifications": [{"connections": ["slack"]}]},
        build={"hubRef": "kaniko"},
        hooks=[{"hubRef": "slack", "trigger": "succeeded", "conditions": "{{ True }}"}],
        schedule={"kind": "cron", "cron": "0 * * * *"},
        events=[{"kinds": ["run_status_done"], "ref": "ops.a"}],
        joins=[{"query": "metrics.loss:<0.1"}],
        dependencies=["a"],
        trigger="all_done",
        conditions="{{ True }}",
        skipOnUpstreamSkip=True,
        patchStrategy="replace",
        isPreset=False,
        runPatch={"container": {}},
        template={"enabled": True},
        mount=["volume"],
        params={"lr": {"value": 0.1, "contextOnly": True}},
        matrix={
            "kind": "random",
            "numRuns": 2,
            "seed": 1,
            "concurrency": 2,
            "params": {"x": {"kind": "uniform", "value": [0, 1]}},
            "earlyStopping": [
                {
                    "kind": "metric_early_stopping",
                    "metric": "loss",
                    "value": 0.1,
                    "optimization": "minimize",
                    "policy": {"kind": "truncation", "percent": 50, "evaluationInterval": 1},
                },
                {"kind": "failure_early_stopping", "percent": 30},
            ],
        },
        pathRef="c.yaml",
    )
    spec = decode(data, m.Polyaxonfile)
    assert isinstance(spec, m.Operation)
    assert isinstance(spec.matrix, m.Random)
    assert spec.matrix.early_stopping is not None
    policy = spec.matrix.early_stopping[0]
    assert isinstance(policy, m.MetricEarlyStopping)
    assert isinstance(policy.policy, m.TruncationPolicy)


def test_hyperband_bayes_hyperopt_validate() -> None:
    metric = {"name": "loss", "optimization": "minimize"}

    def matrix_of(matrix: dict[str, Any]) -> m.Matrix | None:
        spec = decode(op(matrix=matrix), m.Polyaxonfile)
        assert isinstance(spec, m.Operation)
        return spec.matrix

    hyperband = matrix_of(
        {"kind": "hyperband", "maxIterations": 10, "eta": 3, "resource": {"name": "e"}}
    )
    assert isinstance(hyperband, m.Hyperband)
    assert (hyperband.max_iterations, hyperband.eta) == (10, 3)
    assert hyperband.resource == m.OptimizationResource(name="e")
    bayes = matrix_of(
        {
            "kind": "bayes",
            "numInitialRuns": 2,
            "maxIterations": 2,
            "metric": metric,
            "params": {},
            "utilityFunction": {"acquisitionFunction": "ucb", "kappa": 1.2},
        }
    )
    assert isinstance(bayes, m.Bayes)
    assert bayes.num_initial_runs == 2
    assert bayes.metric == m.OptimizationMetric(name="loss", optimization="minimize")
    assert bayes.utility_function == m.UtilityFunction(acquisition_function="ucb", kappa=1.2)
    hyperopt = matrix_of({"kind": "hyperopt", "metric": metric, "params": {}, "algorithm": "tpe"})
    assert isinstance(hyperopt, m.Hyperopt)
    assert hyperopt.algorithm == "tpe"
    assert hyperopt.metric.name == "loss"
    bad = {"kind": "hyperopt", "metric": metric, "params": {}, "algorithm": "smac"}
    assert error_of(op(matrix=bad)).startswith("matrix.algorithm: invalid enum value")


def test_to_camel() -> None:
    assert to_camel("num_runs") == "numRuns"
    assert to_camel("skip_on_upstream_skip") == "skipOnUpstreamSkip"
    assert to_camel("numRuns") == "numRuns"


def test_non_string_mapping_keys_are_named() -> None:
    data = op(matrix={"kind": "mapping", "values": [{1: 2}]})
    assert error_of(data) == "matrix.values[0]: expected str keys, got int"
