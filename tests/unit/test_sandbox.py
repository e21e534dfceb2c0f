"""The bounded sandbox: ordinary templates render exactly as plain Jinja (Polyaxon's engine)
renders them; templates that would build too much or run too long are refused, fast."""

from __future__ import annotations

import time
from typing import Any

import jinja2
import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import sandbox
from orchestrator.spec.templating import Renderer

CONTEXT: dict[str, Any] = {
    "lr": 0.01,
    "epochs": 5,
    "name": "resnet",
    "layers": [64, 128, 256],
    "cfg": {"a": 1, "b": [1, 2]},
    "params": {"as_args": ["--lr=0.01", "--epochs=5"]},
}

ORDINARY = [
    "{{ lr }} {{ epochs }} {{ name }} {{ layers }} {{ cfg }}",
    "{{ lr * 10 }} {{ epochs + 1 }} {{ epochs - 1 }} {{ epochs / 2 }} {{ epochs // 2 }}",
    "{{ epochs % 3 }} {{ 2 ** 10 }} {{ 10 ** -2 }} {{ -epochs }} {{ 'ab' * 3 }} {{ [1] * 3 }}",
    "{{ name ~ '-' ~ epochs }} {{ 'x' + name }} {{ layers + [512] }}",
    "{{ '%s-%05.2f' % (name, lr) }} {{ '%(n)s' % {'n': name} }} {{ '%d%%' % 5 }}",
    "{{ '{}-{:>6}'.format(name, epochs) }} {{ '{0:{1}}'.format(1, 4) }}",
    "{{ name|center(12) }}|{{ name|upper }}|{{ 'a\nb'|indent(2, first=True) }}",
    "{{ layers|join(',') }} {{ params.as_args|join(' ') }} {{ layers|sum }}",
    "{{ 'a b c d e f'|wordwrap(3) }} {{ name|replace('n', 'N') }} {{ cfg|tojson }}",
    "{{ layers|batch(2)|list }} {{ layers|slice(2)|list }} {{ [[1], [2]]|sum(start=[]) }}",
    "{{ '%s'|format(name) }} {{ lr|map_format('lr=%s') }} {{ cfg|pprint }}",
    "{% for x in layers %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for k, v in cfg.items() %}{{ k }}={{ v }};{% else %}none{% endfor %}",
    "{% for i in range(3) if i != 1 %}{{ i }}{% endfor %}{% for x in [] %}x{% else %}e{% endfor %}",
    "{% macro arg(n, v) %}--{{ n }}={{ v }}{% endmacro %}{{ arg('lr', lr) }} {{ arg('e', 5) }}",
    "{% set s %}{% for x in layers %}[{{ x }}]{% endfor %}{% endset %}{{ s }}{{ s|length }}",
    "{% set ns = namespace(t=0) %}{% for x in layers %}{% set ns.t = ns.t + x %}{% endfor %}"
    "{{ ns.t }}",
    "{{ name.upper() }} {{ name.center(10, '*') }} {{ ','.join(['a', 'b']) }}",
    "{{ 'a\tb'.expandtabs(4) }} {{ 'x'.ljust(4) }}| {{ '7'.zfill(3) }}",
    "{{ 'aXa'.replace('a', 'bb') }} {{ 'ab'.translate({97: 'z'}) }} {{ (255).to_bytes(2, 'big') }}",
    "{{ layers|first }} {{ layers|last }} {{ layers|reverse|list }} {{ layers|unique|list }}",
    "{{ layers|map('string')|join('-') }} {{ layers|select('odd')|list }} {{ cfg|dictsort }}",
    "{% for x in layers %}{% for y in layers %}{{ x * y }} {% endfor %}{% endfor %}",
    "{% if epochs > 3 and name is string %}yes{% endif %} {{ 10 ** 100 }}",
]


@pytest.mark.parametrize("template", ORDINARY)
def test_ordinary_templates_render_as_plain_jinja_renders_them(template: str) -> None:
    plain = jinja2.Environment(keep_trailing_newline=True)
    plain.filters["map_format"] = lambda value, pattern: pattern % value
    expected = plain.from_string(template).render(CONTEXT)
    assert Renderer().render(template, CONTEXT, field="f") == expected


BOMBS = {
    "center": "{{ 'a'|center(10**9) }}",
    "percent width": "{{ '%1000000000d' % 1 }}",
    "percent star width": "{{ '%*d' % (10**9, 1) }}",
    "percent precision": "{{ '%.1000000000f' % 1.5 }}",
    "repeated percent": "{{ '%(a)s%(a)s%(a)s' % {'a': 'x' * 10**6} }}",
    "format width": "{{ '{:>1000000000}'.format(1) }}",
    "nested format width": "{{ '{0:{1}}'.format(1, 10**9) }}",
    "format_map": "{{ '{a}{a}{a}'.format_map({'a': 'x' * 10**6}) }}",
    "format filter": "{{ '%1000000000s'|format('a') }}",
    "map_format": "{{ 1|map_format('%1000000000d') }}",
    "printed list": "{{ ['a' * 10**6] * 1000 }}",
    "joined list": "{{ (['a' * 10**6] * 1000)|join }}",
    "str join": "{{ ''.join(['a' * 10**6] * 100) }}",
    "indent": "{{ 'a'|indent(10**9) }}",
    "indent every line": "{{ ('\n' * 10**5)|indent(100, blank=True) }}",
    "power": "{{ (10**10000)**10000 }}",
    "squaring": "{% set ns = namespace(n=10**5000) %}{% for i in range(20) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}",
    "repetition": "{{ 'a' * 10**9 }}",
    "list repetition": "{{ [0] * 10**8 }}",
    "concatenation": "{{ 'a' * 10**6 + 'b' * 10**6 }}",
    "tilde doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "extend doubling": "{% set x = [1] %}{% for i in range(64) %}{{ x.extend(x) }}{% endfor %}",
    "append loop": "{% set x = [] %}{% for i in range(100000) %}{% for j in range(100) %}"
    "{{ x.append('a' * 1000 ~ j) }}{% endfor %}{% endfor %}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "set block": "{% set s %}{% for i in range(100000) %}{{ 'a' * 1000 ~ i }}{% endfor %}"
    "{% endset %}",
    "output": "{% for i in range(100000) %}{{ 'a' * 1000 }}{% endfor %}",
    "replace": "{{ ('a' * 10**5)|replace('a', 'b' * 100) }}",
    "replace empty": "{{ 'abc'.replace('', 'x' * 10**6) }}",
    "bytes replace": "{{ ('a' * 10**5).encode().replace('a'.encode(), ('b' * 10**6).encode()) }}",
    "bytes percent": "{{ '%1000000000d'.encode() % 1 }}",
    "wordwrap": "{{ ('a ' * 10**5)|wordwrap(1, wrapstring='-' * 100) }}",
    "tojson indent": "{{ [[[[1]]]]|tojson(indent=10**9) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(10**6) }}",
    "ljust": "{{ 'a'.ljust(10**9) }}",
    "translate": "{{ ('a' * 1000).translate({97: 'b' * 10**6}) }}",
    "to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "lipsum": "{{ lipsum(10**6) }}",
    "batch": "{{ [1]|batch(10**9, 0)|list }}",
    "slice": "{{ [1]|slice(10**9)|list }}",
    "sum of lists": "{{ ([['a'] * 10**5] * 100)|sum(start=[]) }}",
    "big range": "{{ range(10**9)|list }}",
    "hex int": "{{ ('f' * 10**5)|int(base=16) }}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
    "{% endmacro %}{{ f(60) }}",
    "recursive macro": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "many tokens": "{{ x }}" * 5000,
}


@pytest.mark.parametrize("template", BOMBS.values(), ids=list(BOMBS))
def test_bombs_are_refused_quickly(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        Renderer(lenient=["x"]).render(template, {}, field="run.container.args[0]")
    message = str(info.value)
    assert message.startswith("run.container.args[0]: template error: ")
    assert "\n" not in message
    assert time.monotonic() - started < sandbox.TEMPLATE_TIMEOUT_S + 1


def test_a_render_stops_at_its_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "TEMPLATE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(sandbox, "MAX_TEMPLATE_STEPS", 10**12)
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"took longer than 0\.2s"):
        Renderer().render(slow, {}, field="f")
    assert time.monotonic() - started < 1.5


def test_steps_are_counted_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_TEMPLATE_STEPS", 50)
    renderer = Renderer()
    loop = "{% for i in range(40) %}{{ i }}{% endfor %}"
    for _ in range(3):  # each render has its own budget
        with pytest.raises(SpecError, match="more than 50 steps"):
            renderer.render(loop, {}, field="f")
    assert renderer.render("{% for i in range(10) %}{{ i }}{% endfor %}", {}, field="f")


def test_loop_length_still_works_over_iterators() -> None:
    template = "{% for x in xs|select %}{{ loop.index }}/{{ loop.length }} {% endfor %}"
    assert Renderer().render(template, {"xs": [0, 1, 2, 3]}, field="f") == "1/3 2/3 3/3 "


def test_nul_bytes_never_reach_argv() -> None:
    renderer = Renderer()
    with pytest.raises(SpecError, match=r"^run.container.args\[1\]: contains a NUL byte"):
        renderer.argv_items(["ok", "{{ v }}"], {"v": "a\0b"}, field="run.container.args")
    with pytest.raises(SpecError, match=r"^run.container.args: contains a NUL byte"):
        renderer.argv_items("{{ v }}", {"v": ["a", "b\0"]}, field="run.container.args")
    assert renderer.argv_items(["{{ v }}"], {"v": "a b"}, field="a") == ["a b"]
