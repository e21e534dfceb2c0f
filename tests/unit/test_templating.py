from typing import Any

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec.templating import ParamView, Renderer, as_arg, as_str, to_string


def view(name: str, value: Any, **kw: Any) -> ParamView:
    return ParamView(name, value, kw.pop("type", None), **kw)


@pytest.mark.parametrize(
    ("param", "arg"),
    [
        (view("lr", 0.01), "--lr=0.01"),
        (view("check", True), "--check=true"),
        (view("flag", True, is_flag=True), "--flag"),
        (view("flag", False, is_flag=True), ""),
        (view("fmt", 0.5, arg_format="lr={{ fmt }}"), "lr=0.5"),
        (view("fmt", None, arg_format="lr={{ fmt }}"), ""),
        (view("opt", None), ""),
        (view("layers", [1, 2]), "--layers=[1,2]"),
        (view("cfg", {"a": 1}), '--cfg={"a":1}'),
        (view("tiny", 1e-7), "--tiny=1e-7"),
        (view("small", 1e-5), "--small=0.00001"),
        (view("n", 0), "--n=0"),
    ],
)
def test_as_arg_table(param: ParamView, arg: str) -> None:
    assert as_arg(param) == arg


def test_as_str() -> None:
    assert as_str(view("b", True)) == "true"
    assert as_str(view("x", None)) == ""
    assert as_str(view("s", "text")) == "text"
    assert as_str(view("f", True, is_flag=True)) == "--f"


def test_to_string_is_orjson_like() -> None:
    assert to_string(1e16) == "1e+16"
    assert to_string(1.5e-10) == "1.5e-10"
    assert to_string(0.1) == "0.1"
    assert to_string(None) is None


def render_argv(items: Any, context: dict[str, Any], lenient: tuple[str, ...] = ()) -> list[str]:
    return Renderer(lenient).argv_items(items, context, field="run.container.args")


def test_list_items_render_as_text_without_literal_eval() -> None:
    ctx = {"lr": "1e-3", "quoted": "'q'"}
    assert render_argv(["{{ lr }}", "{{ quoted }}", "1e-3"], ctx) == ["1e-3", "'q'", "1e-3"]


def test_none_and_empty_items_are_dropped_but_zero_stays() -> None:
    assert render_argv([None, "", 0, "{{ empty }}", "x", False], {"empty": ""}) == [
        "0",
        "x",
        "False",
    ]


def test_plain_string_is_one_item() -> None:
    assert render_argv("train --lr={{ lr }}", {"lr": 0.1}) == ["train --lr=0.1"]


def test_as_args_string_spreads_into_items() -> None:
    ctx = {"params": {"as_args": ["--a=1", "--b"]}}
    assert render_argv("{{ params.as_args }}", ctx) == ["--a=1", "--b"]


def test_undefined_variable_is_an_error_naming_it() -> None:
    with pytest.raises(SpecError) as info:
        render_argv(["--lr={{ learnig_rate }}"], {"learning_rate": 0.1})
    assert "learnig_rate" in str(info.value)
    assert info.value.field == "run.container.args[0]"


def test_lenient_names_render_empty() -> None:
    assert render_argv(["--x={{ only_in_some_entries }}"], {}, ("only_in_some_entries",)) == [
        "--x="
    ]


def test_undefined_attribute_of_globals_is_an_error() -> None:
    with pytest.raises(SpecError, match="nope"):
        render_argv(["{{ globals.nope }}"], {"globals": {"uuid": "u"}})


def test_sandbox_blocks_dunder_access() -> None:
    with pytest.raises(SpecError):
        render_argv(["{{ ''.__class__.__mro__[1].__subclasses__() }}"], {})


def test_map_format_filter() -> None:
    assert render_argv(["{{ 3 | map_format('n=%s') }}"], {}) == ["n=3"]


def test_syntax_error_is_reported() -> None:
    with pytest.raises(SpecError, match="syntax"):
        render_argv(["{{ lr "], {"lr": 1})


@pytest.mark.parametrize(
    "expr",
    [
        "{{ 'a' * 10**9 }}",
        "{{ [1] * 10**8 }}",
        "{{ 10 ** 100000000 }}",
        "{{ range(10**9) | list }}",
    ],
)
def test_templates_cannot_exhaust_memory(expr: str) -> None:
    with pytest.raises(SpecError, match="template error"):
        render_argv([expr], {})


def test_ordinary_arithmetic_still_works() -> None:
    assert render_argv(["{{ 2 ** 10 }}", "{{ 'ab' * 2 }}", "{{ 3 * 4 }}"], {}) == [
        "1024",
        "abab",
        "12",
    ]
