"""Mapping entries are checked with one full render per shape, and fail exactly as before."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_spec
from orchestrator.spec.entry_shapes import EntryShapes, lookups
from orchestrator.spec.resolve import Plan
from orchestrator.spec.templating import Renderer

#: Good entries before the bad one: all of one shape, so the bad one is not the first.
GOOD = 40


def mapping(
    entries: list[dict[str, Any]],
    inputs: list[dict[str, Any]],
    command: list[str] | str,
    env: list[dict[str, str]] | None = None,
) -> str:
    lines = ["version: 1.1", "kind: operation", "matrix:", "  kind: mapping", "  values:"]
    lines += [f"  - {json.dumps(e)}" for e in entries]
    lines += ["component:", "  inputs:" if inputs else "  inputs: []"]
    lines += [f"  - {json.dumps(i)}" for i in inputs]
    container: dict[str, Any] = {"command": command, **({"env": env} if env else {})}
    lines.append("  run: " + json.dumps({"kind": "job", "container": container}))
    return "\n".join(lines) + "\n"


STR_INPUT = [{"name": "s", "type": "str"}]
STRS = [{"s": f"v{i}"} for i in range(GOOD)]
INTS = [{"x": i} for i in range(GOOD)]
NUL = "contains a NUL byte, which no command line, environment variable or path can hold"

# (entries, inputs, command, env, expected "field: message"); every message is what the
# entry-by-entry render gave (checked against the old code).
Case = tuple[
    list[dict[str, Any]], list[dict[str, Any]], list[str] | str, list[dict[str, str]] | None, str
]
BAD: dict[str, Case] = {
    "nul in a value": (
        [*STRS, {"s": "a\0b"}], STR_INPUT, ["echo", "{{ s }}"], None,
        f"run.container.command[1]: {NUL}",
    ),
    "value over the output bound": (
        [*STRS, {"s": "x" * 1_100_000}], STR_INPUT, ["echo", "{{ s }}"], None,
        "run.container.command[1]: template error: refused: would build an output of about "
        "1,100,000 characters, more than 1,048,576",
    ),
    "another type has no such attribute": (
        [*INTS, {"x": "a"}], [], ["echo", "{{ x.real }}"], None,
        "run.container.command[1]: 'real' is not defined on the value it was read from",
    ),
    "a list value": (
        [*INTS, {"x": [1, 2]}], [], ["echo", "{{ x.real }}"], None,
        "run.container.command[1]: 'real' is not defined on the value it was read from",
    ),
    "escapes read back by literal_eval in env": (
        [*STRS, {"s": "'\\x00'"}], STR_INPUT, ["echo"], [{"name": "E", "value": "{{ s }}"}],
        f"run.container.env[0].value: {NUL}",
    ),
    "escapes read back by literal_eval in a string command": (
        [*STRS, {"s": "\\x00"}], STR_INPUT, "['{{ s }}']", None, f"run.container.command: {NUL}",
    ),
    "a value written as a template": (
        [*STRS, {"s": "{{ globals.nope }}"}], STR_INPUT, ["echo", "{{ s }}"], None,
        "params.s: 'nope' is not defined on the value it was read from",
    ),
    "a new key read where it is missing": (
        [*INTS, {"x": 1, "y": 2}], [], ["echo", "{{ x }}", "{{ params.y.nope }}"], None,
        "run.container.command[2]: 'dict object' has no attribute 'y'",
    ),
    "a value-dependent expression": (
        [*INTS, {"x": 0}], [], ["echo", "{{ 10 // x }}"], None,
        "run.container.command[1]: template error: integer division or modulo by zero",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_a_late_bad_entry_fails_as_its_own_render_would(
    write: Callable[..., Path], case: str
) -> None:
    entries, inputs, command, env, expected = BAD[case]
    spec = write(mapping(entries, inputs, command, env))
    with pytest.raises(SpecError) as info:
        compile_plan(load_spec(spec))
    assert str(info.value) == f"{spec}: {expected}"


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The index of every run :meth:`Plan.render` renders, in order."""
    seen: list[int] = []
    real = Plan.render

    def counting(self: Plan, index: int, *args: Any, **kwargs: Any) -> Any:
        seen.append(index)
        return real(self, index, *args, **kwargs)

    monkeypatch.setattr(Plan, "render", counting)
    return seen


def test_entries_of_one_shape_render_once(write: Callable[..., Path], rendered: list[int]) -> None:
    entries = [{"s": f"v{i}", "n": i} for i in range(500)] + [{"s": "z"}] + [{"s": "y", "n": 1.5}]
    command = ["echo", "{{ s }}", "{{ params.s.as_arg }}", "{{ params.as_args }}",
               "{{ globals['uuid'] }}", "{{ n }}"]  # fmt: skip
    spec = write(mapping(entries, STR_INPUT, command))
    plan = compile_plan(load_spec(spec))
    # One render per shape: (s: str, n: int), (s: str), (s: str, n: float).
    assert rendered == [0, 500, 501]
    runs = list(plan.runs())
    assert runs[7].argv == ["echo", "v7", "--s=v7", "['--s=v7', '--n=7']", runs[7].uuid, "7"]


INIT = '  run: {"kind": "job", "container": {"command": ["echo"]}, "init": [{"file": {"content": '


@pytest.mark.parametrize(
    "run",
    [
        '  run: {"kind": "job", "container": {"command": ["echo", "{{ x | string }}"]}}',
        '  run: {"kind": "job", "container": {"command": ["echo", "{{ x }}{{ range(2) }}"]}}',
        INIT + '"{{ x }}", "filename": "a"}}]}',
    ],
)
def test_filters_calls_and_init_templates_render_every_entry(
    write: Callable[..., Path], rendered: list[int], run: str
) -> None:
    text = mapping(INTS, [], ["echo"]).splitlines()
    spec = write("\n".join([*text[:-1], run]) + "\n")
    compile_plan(load_spec(spec))
    assert rendered == list(range(GOOD))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain", (0, 0)),
        ("--a={{ a }}", (1, 0)),
        ("{{ params.a.as_arg }}{{ globals['uuid'] }}", (2, 0)),
        ("{{ params.as_args }} {{ params }} {{ params.a }} {{ globals }}", (0, 4)),
        ("{{ a | int }}", None),
        ("{{ a() }}", None),
        ("{{ a[0] }}", None),
        ("{% for x in a %}{{ x }}{% endfor %}", None),
        ("{{ a + 1 }}", None),
        ("{{ a", None),
    ],
)
def test_lookups_counts_only_plain_lookups(source: str, expected: tuple[int, int] | None) -> None:
    assert lookups(Renderer(), source) == expected


def test_wide_lookups_bound_how_many_values_render_alike() -> None:
    narrow = EntryShapes(Renderer(), ["{{ a }}"], fixed=0)
    wide = EntryShapes(Renderer(), ["{{ params }}"], fixed=0)
    many = {f"k{i}": i for i in range(100)}
    narrow.rendered(many)
    wide.rendered(many)
    assert narrow.renders_alike(many)
    assert not wide.renders_alike(many)  # 100 values could approach the output bound
    assert not EntryShapes(Renderer(), None, fixed=0).renders_alike({})
