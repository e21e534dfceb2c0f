"""Conformance: polyaxonfiles whose expansion Polyaxon 2.18 itself produced (tests/corpus).

Each ``NAME.yaml`` comes with ``NAME.expected.json`` (Polyaxon's runs: typed params and argv),
``NAME.error.txt`` (Polyaxon rejected it), optionally ``NAME.args`` (``-P`` flags, one a line).
Random matrices record only the number of runs and the keys (we draw with another generator).
Where we differ on purpose (README, "Where we differ"), ``DIFFERENCES`` says why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec.yamlsafe import load_yaml
from orchestrator.store.layout import run_paths

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CASES = sorted(p for p in CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []

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

#: Matrix kinds Polyaxon expands that we validate and then refuse as not supported yet.
NOT_YET = {"hyperband", "bayes", "hyperopt", "iterative", "tpe"}


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
    if kind in NOT_YET and not error_file.exists():
        with pytest.raises(SpecError, match=r"not supported yet|expected one of"):
            compile_plan(load_spec(case), overrides, paths=run_paths(tmp_path))
        return
    if error_file.exists():
        with pytest.raises(SpecError) as info:
            plan = compile_plan(load_spec(case), overrides, paths=run_paths(tmp_path))
            list(plan.runs())
        message = str(info.value)
        assert "\n" not in message
        assert str(case) in message or "components" in message
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
