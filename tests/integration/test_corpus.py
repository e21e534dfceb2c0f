"""Conformance: polyaxonfiles whose expansion Polyaxon 2.18 itself produced (tests/corpus).

Each ``NAME.yaml`` comes with ``NAME.expected.json`` (Polyaxon's runs: typed params and argv),
``NAME.error.txt`` (Polyaxon rejected it), optionally ``NAME.args`` (``-P`` flags, one a line).
Random matrices record only the number of runs and the keys (we draw with another generator).
Where we differ on purpose (README, "Where we differ"), ``DIFFERENCES`` says why.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec.dag import compile_dag, node_spec
from orchestrator.spec.yamlsafe import load_yaml
from orchestrator.store.layout import run_paths

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
ALL_CASES = sorted(p for p in CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []


def _is_dag_case(case: Path) -> bool:
    return any(case.with_suffix(s).exists() for s in (".dag.expected.json", ".dag.error.txt"))


CASES = [c for c in ALL_CASES if not _is_dag_case(c)]
DAG_CASES = [c for c in ALL_CASES if _is_dag_case(c)]

#: Cases where we differ from Polyaxon on purpose; each is covered by its own unit test.
DIFFERENCES: dict[str, str] = {
    "grid_datetimerange": "datetime inputs take datetimes (clipped maps datetime to date); "
    "test_types.py",
    "types_date": "datetime inputs hold datetimes, not dates (clipped maps datetime to date); "
    "test_types.py",
    "types_datetime_with_time_rejected": "datetime inputs take a time of day; test_types.py",
    "tpl_globals": "globals point at local paths; test_resolve.py::test_globals_point_into_*",
    "tpl_undefined_renders_empty": "an undefined name is an error naming it; "
    "test_resolve.py::test_undefined_variable_names_it_and_the_file",
}

#: Matrix kinds whose runs a searcher suggests as results come (no expansion to compare).
ADAPTIVE = {"hyperband", "bayes", "hyperopt", "iterative", "tpe"}

#: For each ``NAME.error.txt``: what Polyaxon's message and ours both say, compared after
#: :func:`_normalized`. A string must appear in both; a pair is (Polyaxon's wording, ours) for
#: the same fact where the wording differs.
ERROR_FRAGMENTS: dict[str, tuple[str | tuple[str, str], ...]] = {
    "bayes_missing_metric": ("matrix.", ".metric", "required"),
    "cache_unknown_key": ("cache.", ".disabled", ("extra inputs are not permitted", "unknown key")),
    "early_stopping_bad_optimization": ("earlystopping", "optimization", "'lowest'"),
    "early_stopping_missing_kind": (
        "earlystopping",
        "failureearlystopping",
        ("discriminator 'kind'", "kind: required key missing"),
    ),
    "grid_datetimerange_str_rejected": ("'ts'", "datetime", "str"),
    "grid_linspace_into_int_rejected": ("epochs", "1.5", ("to 'int'", "expected int, got 1.5")),
    "grid_pchoice_rejected": ("params", "act", "distribution", "cannot be used with grid search"),
    "grid_range_into_any_rejected": ("'r'", "int or float", "any"),
    "grid_range_start_ge_stop": ("epochs", "range", "start", "stop", "5.0", "1.0"),
    "grid_uniform_rejected": ("learningrate", "distribution", "cannot be used with grid search"),
    "io_reserved_name": ("inputs.0.name", "'params'"),
    "isflag_non_bool": ("inputs.0", "flag", "int", "bool"),
    "mapping_missing_required": (
        ("input epochs is required", "matrix.values.1: input 'epochs' is required"),
        "no param was passed",
    ),
    "params_cli_leading_zero": ("epochs", "010", ("to 'int'", "expected int")),
    "params_text_not_json_number": ("lr", ".5", ("to 'float'", "expected float")),
    "random_missing_num_runs": ("matrix.", "numruns", "required"),
    "random_pchoice_sum_over_one": ("epochs", "pchoice", "sum to"),
    "required_input_missing": (
        ("input epochs is required", "params: input 'epochs' is required"),
        "no param was passed",
    ),
    "required_inputs_no_params": ("params", ("non optional inputs", "'epochs' is required")),
    "struct_bad_name": ("name", "'my run'"),
    "struct_component_required_input": ("params", ("non optional inputs", "'lr' is required")),
    "struct_container_unknown_key": ("container", "cmd", ("unexpected keyword", "unknown key")),
    "struct_matrix_missing_kind": (
        "matrix",
        ("discriminator 'kind'", "matrix.kind: required key missing"),
    ),
    "struct_missing_kind": (
        ("'kind' must be specified", "kind: required key missing; expected operation or component"),
    ),
    "struct_missing_version": (("'version' must be specified", "version: required key missing"),),
    "struct_no_reference": (("has no run", "(got none)"),),
    "struct_run_kind_unknown": ("run.kind", "'jobb'"),
    "struct_two_references": (
        "hubref, dagref, urlref, pathref",
        ("at most one reference", "(got hubref, pathref)"),
    ),
    "struct_unexpected_param": ("params", "'bogus'"),
    "struct_unknown_hp_kind": ("epochs", "'chose'"),
    "struct_unknown_io_key": (
        "inputs.0.defualt",
        ("extra inputs are not permitted", "unknown key"),
    ),
    "struct_unknown_matrix_key": (
        "matrix.",
        ".numrun",
        ("extra inputs are not permitted", "unknown key"),
    ),
    "struct_snake_top_section": (("unexpected section 'pathref'", "pathref: unexpected section"),),
    "struct_unknown_top_key": (("unexpected section 'foo'", "foo: unknown key"),),
    "struct_version_10": ("1.1", ("version specified is not supported", "expected 1.1, got 1.0")),
    "struct_version_string": (
        (
            "not supported between instances of 'float' and 'str'",
            "expected the number 1.1, got the string '1.1'",
        ),
    ),
    "types_bool_rejects_text": (
        ("for 'a'", "params.a.value"),
        ("to 'bool'", 'expected bool, got "maybe"'),
    ),
    "types_int_rejects_fraction": (
        ("for 'a'", "params.a.value"),
        ("to 'int'", "expected int, got 5.5"),
    ),
    "types_int_rejects_text": (
        ("for 'a'", "params.a.value"),
        ("to 'int'", 'expected int, got "abc"'),
    ),
    "types_list_rejects_scalar": (
        ("for 'xs'", "params.xs.value"),
        ("to 'list[int]'", 'expected list[int], got "abc"'),
    ),
    "validation_default_value_checked": ("inputs.0", ("less than '10'", "< 10"), "50"),
    "validation_gt_fail": (("for 'a'", "params.a.value"), ("greater than '0'", "> 0, got 0")),
    "validation_le_fail": (
        ("for 'a'", "params.a.value"),
        ("less than or equal to '10'", "<= 10"),
        "11",
    ),
    "validation_min_length_fail": (
        ("for 'd'", "params.d.value"),
        ("at least '5' characters", "length of at least 5"),
    ),
    "validation_options_fail": (("for 'c'", "params.c.value"), "['sgd', 'adam']", "'rmsprop'"),
    "validation_options_shortcut_fail": (
        ("for 'c'", "params.c.value"),
        "['sgd', 'adam']",
        "'rmsprop'",
    ),
    "validation_regex_fail": (("for 'd'", "params.d.value"), "'^run-[0-9]+$'", "'walk-1'"),
    "value_with_is_optional_false": ("inputs.0", "optional", "remove"),
}


def _normalized(message: str) -> str:
    """Spell Polyaxon's and our messages alike: ``inputs[0]`` as pydantic's ``inputs.0``,
    backticks as quotes, no case, no ``_`` (``hub_ref`` and ``hubRef`` both give ``hubref``)."""
    message = re.sub(r"\[(\d+)\]", r".\1", message)
    return message.replace("`", "'").replace("_", "").lower()


def _overrides(case: Path) -> dict[str, str]:
    args_file = case.with_suffix(".args")
    if not args_file.exists():
        return {}
    out: dict[str, str] = {}
    lines = [line.strip() for line in args_file.read_text().splitlines() if line.strip()]
    for line in lines:
        if line in {"-P", "--param"}:
            continue
        name, _, value = line.removeprefix("-P").strip().partition("=")
        out[name] = value
    return out


def _close(ours: Any, theirs: Any) -> bool:
    """Equal, allowing one-ulp float differences (numpy's vectorised pow)."""
    if isinstance(ours, float) and isinstance(theirs, float):
        return ours == theirs or math.isclose(ours, theirs, rel_tol=1e-15)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(_close, ours, theirs))
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_close(ours[k], theirs[k]) for k in ours)
    return bool(ours == theirs) and type(ours) is type(theirs)


def _argv_close(ours: list[str], theirs: list[str]) -> bool:
    if ours == theirs:
        return True
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        if a == b:
            continue
        prefix_a, _, num_a = a.rpartition("=")
        prefix_b, _, num_b = b.rpartition("=")
        try:
            if prefix_a != prefix_b or not math.isclose(float(num_a), float(num_b), rel_tol=1e-15):
                return False
        except ValueError:
            return False
    return True


@pytest.mark.skipif(not CASES, reason="no corpus")
@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_polyaxon_corpus(case: Path, tmp_path: Path) -> None:
    expected_file = case.with_suffix(".expected.json")
    error_file = case.with_suffix(".error.txt")
    if not expected_file.exists() and not error_file.exists():
        pytest.skip("component used by other cases")
    if case.stem in DIFFERENCES:
        pytest.skip(f"deliberate difference: {DIFFERENCES[case.stem]}")
    overrides = _overrides(case)
    kind = (load_yaml(case.read_text()).get("matrix") or {}).get("kind")
    if kind in ADAPTIVE and not error_file.exists():
        plan = compile_plan(load_spec(case), overrides, paths=run_paths(tmp_path))
        assert plan.expansion is not None and plan.expansion.adaptive
        return
    if error_file.exists():
        with pytest.raises(SpecError) as info:
            plan = compile_plan(load_spec(case), overrides, paths=run_paths(tmp_path))
            list(plan.runs())
        message = str(info.value)
        assert "\n" not in message
        assert str(case) in message or "components" in message
        assert case.stem in ERROR_FRAGMENTS, f"say what {error_file.name} and we both say"
        theirs, ours = _normalized(error_file.read_text()), _normalized(message)
        for fragment in ERROR_FRAGMENTS[case.stem]:
            their_words, our_words = (fragment, fragment) if isinstance(fragment, str) else fragment
            assert their_words in theirs, (their_words, error_file.read_text())
            assert our_words in ours, (our_words, message)
        return
    expected = json.loads(expected_file.read_text())
    plan = compile_plan(load_spec(case), overrides, paths=run_paths(tmp_path))
    runs = [
        json.loads(
            msgspec.json.encode(
                {"index": r.index, "params": r.params, "argv": r.argv, "env": r.env}
            )
        )
        for r in plan.runs()
    ]
    if "num_runs" in expected:
        assert len(runs) == expected["num_runs"]
        for run in runs:
            assert set(expected["keys"]) <= set(run["params"])
        return
    assert len(runs) == len(expected["runs"])
    for ours, theirs in zip(runs, expected["runs"], strict=True):
        assert ours["index"] == theirs["index"]
        assert _close(ours["params"], theirs["params"]), (ours["params"], theirs["params"])
        assert _argv_close(ours["argv"], theirs["argv"]), (ours["argv"], theirs["argv"])
        assert ours["env"] == theirs.get("env", {})


# --------------------------------------------------------------------------- pipelines (DAGs)
#: ``dag_NAME.yaml`` with ``NAME.dag.expected.json`` (Polyaxon's ``sort_topologically`` levels,
#: each operation's upstream, and the params and argv of each operation that compiles on its own:
#: no matrix, no ref, no join; null otherwise) or ``NAME.dag.error.txt`` (its message).
DAG_ERROR_FRAGMENTS: dict[str, tuple[str | tuple[str, str], ...]] = {
    "dag_cyclic_pipeline": ("graph is not acyclic",),
    "dag_pipeline_with_no_ops": ("pipeline is not valid, it has no ops",),
    "dag_pipeline_with_no_components": (
        "requires a component with name 'job-template', which is not defined on this pipeline",
    ),
    "dag_pipeline_ops_not_corresponding_to_components": (
        "requires a component with name 'job-template', which is not defined on this pipeline",
    ),
    "dag_ref_output_missing": (
        "param 'x' has a ref value 'outputs.nope', but",
        "has no such information",
    ),
    "dag_ref_output_int_from_float": (
        ("input type 'int' and it does not correspond", "input type 'int' that does not"),
        "'float'",
    ),
    "dag_ref_output_untyped": (
        ("input type 'float' and it does not correspond", "input type 'float' that does not"),
        "none",
    ),
    "dag_ref_output_list_mismatch": ("param 'x'", "'outputs.losses'", "list"),
    "dag_ref_unknown_op": ("non valid dag", "orphan ops", "'zz'"),
    "dag_ref_bad_entity": ("could not parse ref 'foo", "for param 'x'"),
    "dag_ref_bad_section": ("invalid value 'foo.loss' for param 'x'", "'foo' must be one of"),
    "dag_ref_dag_missing_input": ("param 'x' has a ref value 'inputs.nope', but", "no such"),
}


@pytest.mark.skipif(not DAG_CASES, reason="no corpus")
@pytest.mark.parametrize("case", DAG_CASES, ids=[c.stem for c in DAG_CASES])
def test_polyaxon_dag_corpus(case: Path, tmp_path: Path) -> None:
    error_file = case.with_suffix(".dag.error.txt")
    if error_file.exists():
        with pytest.raises(SpecError) as info:
            compile_dag(load_spec(case), paths=run_paths(tmp_path))
        message = str(info.value)
        assert "\n" not in message and str(case) in message
        theirs, ours = _normalized(error_file.read_text()), _normalized(message)
        for fragment in DAG_ERROR_FRAGMENTS[case.stem]:
            their_words, our_words = (fragment, fragment) if isinstance(fragment, str) else fragment
            assert their_words in theirs, (their_words, error_file.read_text())
            assert our_words in ours, (our_words, message)
        return
    expected = json.loads(case.with_suffix(".dag.expected.json").read_text())
    plan = compile_dag(load_spec(case), paths=run_paths(tmp_path))
    assert [sorted(level) for level in plan.levels] == expected["levels"]
    assert {n: sorted(node.upstream) for n, node in plan.nodes.items()} == expected["upstream"]
    for name, theirs in expected["runs"].items():
        if theirs is None:
            continue
        spec = node_spec(plan, name, {})
        run = next(iter(compile_plan(spec, paths=run_paths(tmp_path)).runs()))
        assert _close(run.params, theirs["params"]), (name, run.params, theirs["params"])
        assert _argv_close(run.argv, theirs["argv"]), (name, run.argv, theirs["argv"])
