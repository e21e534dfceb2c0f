"""Planning at scale: ``plan --json`` written run by run, templates of text and names rendered
without Jinja's per-render machinery (and exactly as Jinja renders them), ``globals`` paths
built only for specs that use them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import msgspec
import pytest

from orchestrator.cli import main
from orchestrator.cli.plan_cmd import _write_json
from orchestrator.exceptions import SpecError
from orchestrator.spec import compile_plan, load_text
from orchestrator.spec.resolve import RunSpec
from orchestrator.spec.sandbox import MAX_TEMPLATE_CHARS, BoundedSandbox
from orchestrator.spec.templating import Renderer

GRID = """
version: 1.1
kind: operation
matrix:
  kind: grid
  params:
    a: {kind: range, value: "0:3:1"}
    b: {kind: choice, value: ["x y", "q\\"uote", "\\u00e9"]}
component:
  inputs:
  - {name: a, type: float}
  - {name: b, type: str}
  - {name: flag, type: bool, isFlag: true, value: true}
  run:
    kind: job
    container:
      command: [train, "--a={{ a }}", "{{ b }}", "{{ params.flag.as_arg }}"]
      args: "{{ params.as_args }}"
"""


def _spec(spec: str, home: Path) -> Path:
    path = home / "spec.yaml"
    path.write_text(spec)
    return path


def test_plan_json_is_the_whole_list_encoded_at_once(tmp_path: Path) -> None:
    """The streamed bytes are those of encoding every run in one list, as before."""
    path = _spec(GRID, tmp_path)
    out = io.StringIO()
    assert main(["plan", str(path), "--json", "--home", str(tmp_path)], out=out) == 0
    plan = compile_plan(load_text(GRID, str(path)), {})
    runs = [{"index": r.index, "params": r.params, "argv": r.argv} for r in plan.runs()]
    whole = ", ".join(msgspec.json.encode(r).decode() for r in runs)
    assert out.getvalue() == '{"runs": [' + whole + "]}\n"
    assert len(json.loads(out.getvalue())["runs"]) == 9


class _Writes(io.StringIO):
    """Records how many writes came before each run was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_plan_json_writes_each_run_before_rendering_the_next() -> None:
    out = _Writes()
    seen: list[int] = []

    def runs() -> Iterator[RunSpec]:
        for index in range(3):
            seen.append(out.writes)
            yield RunSpec(
                index=index, uuid="u", params={"i": index}, argv=["x"], env={}, working_dir=None
            )

    _write_json(runs(), out)
    assert seen == [0, 1, 2], "run N is written before run N+1 is rendered"
    assert json.loads(out.getvalue())["runs"][2] == {"index": 2, "params": {"i": 2}, "argv": ["x"]}


def test_plan_json_of_no_runs_and_of_a_first_run_that_fails() -> None:
    out = io.StringIO()
    _write_json(iter(()), out)
    assert out.getvalue() == '{"runs": []}\n'

    def failing() -> Iterator[RunSpec]:
        raise SpecError("cannot render")
        yield  # a generator

    out = io.StringIO()
    with pytest.raises(SpecError):
        _write_json(failing(), out)
    assert out.getvalue() == "", "no partial JSON when the first run cannot render"


class _Counting(Renderer):
    """A renderer counting the templates Jinja compiles (its sandbox is shared with every
    renderer of the process: counted here, not by patching it)."""

    def __init__(self) -> None:
        super().__init__()
        self.compiled: list[str] = []

    def _template(self, source: str) -> jinja2.Template:
        if source not in self._templates:
            self.compiled.append(source)
        return super()._template(source)


CONTEXT: dict[str, Any] = {
    "a": 0.5,
    "n": 12345678901234567890123,
    "s": "x{{ y }}",
    "none": None,
    "flag": True,
    "items": [1, "two", None],
    "mapping": {"k": 1.5},
    "true": "context true",
    "self": "context self",
}


@pytest.mark.parametrize(
    "template",
    [
        "--a={{ a }}",
        "{{a}}{{ n }}",
        "{{\n a\t}} and {{ s }}",
        "{{ items }}/{{ mapping }}/{{ flag }}",
        "{ {{ a }} }}",
        "{{{ a }}",
        "{{ true }}",
        "{{ self }}",
        "{{- a }} x",
        "x {{ a -}}",
        "{{ a }}{# comment #}",
        "{{ a }}{% if a %}!{% endif %}",
        "line\r\n{{ a }}",
        "{{ a }}\n",
        "{{ range }}",
    ],
)
def test_text_and_names_render_as_jinja_renders_them(template: str) -> None:
    try:
        expected = BoundedSandbox(keep_trailing_newline=True).from_string(template).render(CONTEXT)
    except jinja2.TemplateError:  # then the renderer says so, in one line
        with pytest.raises(SpecError, match="template"):
            Renderer().render(template, CONTEXT, field="f")
        return
    assert Renderer().render(template, CONTEXT, field="f") == expected


def test_text_and_names_are_not_compiled() -> None:
    renderer = _Counting()
    for value in range(3):
        assert renderer.render("--a={{ a }} {{ b }}", {"a": value, "b": "c"}, field="f") == (
            f"--a={value} c"
        )
    assert renderer.compiled == []
    renderer.render("{{ a | string }}", {"a": 1}, field="f")
    renderer.render("{{ a | string }}", {"a": 2}, field="f")
    assert renderer.compiled == ["{{ a | string }}"], "the rest: compiled once"


def test_text_and_names_keep_the_errors_and_bounds() -> None:
    with pytest.raises(SpecError, match="undefined variable 'missing'"):
        Renderer().render("--x={{ missing }}", {"a": 1}, field="f")
    assert Renderer(lenient=["missing"]).render("[{{ missing }}]", {}, field="f") == "[]"
    big = "x" * (MAX_TEMPLATE_CHARS // 2 + 1)
    with pytest.raises(SpecError, match="refused"):
        Renderer().render("{{ a }}{{ a }}", {"a": big}, field="f")
    with pytest.raises(SpecError, match="template error"):
        Renderer().render("{{ a }}", {"a": 10**40000}, field="f")  # too long to print


SPEC = """
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{{i: 1}}, {{i: 2}}]}}
component:
  inputs: [{{name: i, type: int}}]
  run: {{kind: job, container: {{command: [echo, "{command}"]}}}}
"""


def _paths_calls(command: str) -> tuple[list[str], list[list[str]]]:
    calls: list[str] = []

    def paths(run_uuid: str) -> Mapping[str, str]:
        calls.append(run_uuid)
        return {"run_outputs_path": f"/out/{run_uuid}"}

    loaded = load_text(SPEC.format(command=command), "spec.yaml")
    plan = compile_plan(loaded, {}, paths=paths)
    argvs = [r.argv for r in plan.runs(uuids=iter(["u1", "u2"]))]
    return calls, argvs


def test_globals_paths_are_built_only_for_specs_that_read_them() -> None:
    calls, argvs = _paths_calls("{{ i }}")
    assert calls == [] and argvs == [["echo", "1"], ["echo", "2"]]
    calls, argvs = _paths_calls("{{ globals.run_outputs_path }}/{{ i }}")
    assert argvs == [["echo", "/out/u1/1"], ["echo", "/out/u2/2"]]
    assert calls[-2:] == ["u1", "u2"]


def test_a_template_value_naming_globals_gets_its_paths() -> None:
    loaded = load_text(
        SPEC.format(command="{{ i }}").replace(
            "{i: 2}", '{i: 2, note: "{{ globals.run_outputs_path }}"}'
        ),
        "spec.yaml",
    )
    plan = compile_plan(loaded, {}, paths=lambda u: {"run_outputs_path": f"/out/{u}"})
    (_, second) = plan.runs(uuids=iter(["u1", "u2"]))
    assert second.params["note"] == "/out/u2"
