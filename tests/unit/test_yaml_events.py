"""The event-built YAML loader: the same values as ``yaml.safe_load``, bounds as it goes."""

from __future__ import annotations

import datetime as dt
import math
import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.exceptions import SpecError
from orchestrator.spec import load as load_module
from orchestrator.spec import load_spec
from orchestrator.spec.yamlsafe import MAX_FILE_BYTES, MAX_NODES, load_yaml

ROOT = Path(__file__).resolve().parents[2]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types and the same key order all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


DOCUMENTS = [
    "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 017, 1_000, 1:30, .inf, -.inf, .nan]\n",
    "t: [yes, no, on, off, true, False, ~, null, '', '1', \"2\", !!str 3, !!float 4]\n",
    "d: 2002-12-14\nts: 2001-12-14t21:59:43.10-05:00\nplain: 2001-12-14 21:59:43.10\n",
    "bin: !!binary aGVsbG8=\nset: !!set {a, b}\nomap: !!omap [{x: 1}, {y: 2}]\n",
    "pairs: !!pairs [{x: 1}, {x: 2}]\nm: !!map {a: 1}\ns: !!seq [1]\n",
    "base: &b {lr: 0.1, epochs: 5}\nrun: {<<: *b, epochs: 10}\n",
    "a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc: {<<: [*a, *b], w: 0}\n",
    "k: &k key\n*k : 1\n'<<': not a merge\n=: equals\n",
    "list: &l [1, [2, [3]]]\nagain: *l\nnested: {a: {b: {c: [*l, *l]}}}\n",
    "- a\n- b: c\n  d: [e, {f: g}]\n",
    "just a scalar",
    "",
    "# only a comment\n",
    "---\n...\n",
    "? complex\n: key\n'quoted: key': 1\n\"double\\tquoted\": '\\n'\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_values_are_what_safe_load_gives(text: str) -> None:
    assert same(load_yaml(text), yaml.safe_load(text))


def test_every_yaml_file_in_the_repository_loads_the_same() -> None:
    files = [p for p in ROOT.rglob("*.y*ml") if ".venv" not in p.parts and ".git" not in p.parts]
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        try:
            expected = yaml.safe_load(data)
        except yaml.YAMLError:
            with pytest.raises(SpecError):
                load_yaml(data, str(path))
            continue
        assert same(load_yaml(data, str(path)), expected), path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: [1, 2\nb: 3\n", "invalid YAML: line 2, column 2"),
        ("a: &x 1\nb: &x 2\n", "line 2, column 4: second occurrence"),
        ("a: *nope\n", "found undefined alias 'nope'"),
        ("? [1]\n: 2\n", "found unhashable key"),
        ("a: !foo [1]\n", "could not determine a constructor for the tag '!foo'"),
        ("a: !!str [1]\n", "expected a scalar node, but found sequence"),
        ("a: !!map [1]\n", "expected a mapping node, but found sequence"),
        ("a: !!seq abc\n", "expected a sequence node, but found scalar"),
        ("a: =\n", "could not determine a constructor"),
        ("a: !!omap [{x: 1, y: 2}]\n", "expected a mapping of length 1"),
        ("--- 1\n--- 2\n", "but found another document"),
        ("d: {<<: [1]}\n", "expected a mapping or list of mappings for merging"),
        ("a: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("&a [*a]\n", "recursive YAML alias"),
    ],
)
def test_errors_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "x.yaml")
    assert problem in str(info.value)
    assert str(info.value).startswith("x.yaml: ")
    assert "\n" not in str(info.value)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_flat_list_past_max_nodes_is_refused_early_and_small() -> None:
    text = "x: [" + ",".join(["1"] * (MAX_FILE_BYTES // 2 - 8)) + "]\n"
    before = _peak_mb()
    started = time.process_time()
    with pytest.raises(SpecError, match=f"more than {MAX_NODES:,} nodes"):
        load_yaml(text, "flat.yaml")
    assert time.process_time() - started < 3
    assert _peak_mb() - before < 100


def test_a_big_mapping_loads_in_linear_time() -> None:
    def mapping(n: int) -> str:
        return "values: [" + ",".join(f"{{lr: {i}, name: n{i}}}" for i in range(n)) + "]\n"

    small, large = mapping(20_000), mapping(80_000)
    started = time.process_time()
    assert len(load_yaml(small)["values"]) == 20_000
    middle = time.process_time()
    assert len(load_yaml(large)["values"]) == 80_000
    ratio = (time.process_time() - middle) / max(middle - started, 1e-3)
    assert ratio < 8, f"4x the entries took {ratio:.1f}x the time"


def test_dates_are_dates() -> None:
    data = load_yaml("d: 2020-01-02\n")
    assert data == {"d": dt.date(2020, 1, 2)}


def test_a_path_ref_is_read_counting_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_module, "MAX_FILE_BYTES", 100)
    (tmp_path / "c.yaml").write_text("#" * 200 + "\n")
    spec = tmp_path / "op.yaml"
    spec.write_text("version: 1.1\nkind: operation\npathRef: c.yaml\n")
    with pytest.raises(SpecError, match="pathRef target is larger than the 100-byte limit"):
        load_spec(spec)
    spec.write_text("version: 1.1\nkind: operation\npathRef: /proc/self/status\n")
    with pytest.raises(SpecError, match="larger than the 100-byte limit"):  # st_size says 0
        load_spec(spec)
    spec.write_text("version: 1.1\nkind: operation\npathRef: .\n")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(spec)
