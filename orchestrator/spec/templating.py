"""Jinja templating of container fields, as Polyaxon 2.18 renders them (§6).

A sandboxed environment (a polyaxonfile may come from a URL) with Polyaxon's ``map_format``
filter, bounded in what a render may build and how long it may take (``sandbox.py``). Inputs
and outputs sit at the top level of the context; ``params.X`` offers ``value``, ``type``,
``as_str`` and ``as_arg``; ``params.as_args`` lists the non-empty ``as_arg`` strings;
``globals`` points at local paths. A name that the operation defines nowhere is an error naming
it (Polyaxon renders ``""`` and hides the typo); a mapping key that only other entries carry
renders empty, as in Polyaxon.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from orchestrator.exceptions import SpecError
from orchestrator.spec.sandbox import BoundedSandbox, TemplateLimitError, render_budget

__all__ = ["ParamView", "Renderer", "as_arg", "as_str", "no_nul", "to_string"]


def _float_text(value: float) -> str:
    """A float as orjson writes it (Polyaxon's ``to_string``): ``1e-7``, ``0.00001``, ``1e+16``."""
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exp_text = text.split("e")
    exponent = int(exp_text)
    if exponent == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return sign + "0.0000" + mantissa.lstrip("-").replace(".", "")
    if exponent < 0:
        return f"{mantissa}e{exponent}"
    return f"{mantissa}e+{exponent}"


def to_string(value: Any) -> str | None:
    """Polyaxon's ``to_string``: numbers, lists and dicts as compact JSON; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Mapping | list | tuple | set):
        return _json(value)
    return str(value)


def _json(value: Any) -> str:
    def encode(v: Any) -> str:
        if isinstance(v, bool) or v is None or isinstance(v, int | str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, float):
            return _float_text(v) if v == v and v not in (float("inf"), float("-inf")) else "null"
        if isinstance(v, Mapping):
            return "{" + ",".join(f"{json.dumps(str(k))}:{encode(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list | tuple | set):
            return "[" + ",".join(encode(x) for x in v) + "]"
        if isinstance(v, dt.datetime | dt.date):
            return json.dumps(v.isoformat())
        return json.dumps(str(v))

    return encode(value)


@dataclass(frozen=True)
class ParamView:
    """What ``params.X`` shows a template."""

    name: str
    value: Any
    type: str | None
    is_flag: bool = False
    arg_format: str | None = None
    connection: str | None = None
    renderer: Renderer | None = None

    @property
    def as_str(self) -> str:
        return as_str(self)

    @property
    def as_arg(self) -> str:
        return as_arg(self)

    def __str__(self) -> str:
        return as_str(self)


def as_str(param: ParamView) -> str:
    """``str(ParamSpec)`` in Polyaxon: the display value, ``""`` for None."""
    if param.is_flag:
        return f"--{param.name}" if param.value else ""
    text = to_string(param.value)
    return "" if text is None else text


def as_arg(param: ParamView) -> str:
    """``--name=value``, ``--flag`` (isFlag), the rendered ``argFormat``, or ``""`` for None."""
    if param.arg_format:
        if param.value is None:
            return ""
        renderer = param.renderer or Renderer()
        return renderer.render(param.arg_format, {param.name: param.value}, field="argFormat")
    if param.is_flag:
        return f"--{param.name}" if param.value else ""
    if param.value is None:
        return ""
    return f"--{param.name}={as_str(param)}"


#: Rendered argv items Polyaxon 2.18 leaves out.
_DROPPED = frozenset({"", "None"})
#: Compiled templates a renderer keeps (a sweep renders the same few fields for every run).
_CACHED_TEMPLATES = 1024


def no_nul(text: str, field: str) -> str:
    """``text`` unless it holds a NUL byte, which no argv item, environment variable or path
    can carry (the kernel would cut it there; Python refuses it when the run starts)."""
    if "\0" in text:
        raise SpecError(
            "contains a NUL byte, which no command line, environment variable or path can hold",
            field=field,
        )
    return text


#: A template that is only text and ``{{ name }}`` parts: the texts (one more than the
#: names) and the names between them.
_Simple = tuple[list[str], list[str]]
#: ``{{ name }}``, with any spaces inside the braces (no ``-``/``+`` whitespace control).
_PLAIN_NAME = re.compile(r"\{\{[ \t\n]*([A-Za-z_][A-Za-z0-9_]*)[ \t\n]*\}\}")
#: Names Jinja reads as constants, operators or its own objects, never from the context.
_NOT_PLAIN = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if",
     "else", "self", "caller", "varargs", "kwargs", "loop", "super"}
)  # fmt: skip


def _split_simple(source: str) -> _Simple | None:
    """``source`` split into texts and names when it holds nothing else Jinja would read
    (no other ``{{``/``{%``/``{#``, no text ending in ``{`` before a name, no ``\\r``,
    which Jinja rewrites); else None."""
    if "\r" in source:
        return None
    parts = _PLAIN_NAME.split(source)
    texts, names = parts[0::2], parts[1::2]
    for i, text in enumerate(texts):
        if "{{" in text or "{%" in text or "{#" in text:
            return None
        if i < len(names) and text.endswith("{"):
            return None
    if not names or any(name in _NOT_PLAIN for name in names):
        return None
    return texts, names


def _undefined_class(lenient: frozenset[str]) -> type[jinja2.Undefined]:
    """Jinja's ``undefined`` for a render where the names in ``lenient`` may be missing (they
    render ``""``); any other missing name is an error naming it."""

    class _Undefined(jinja2.Undefined):
        __slots__ = ()

        def _problem(self) -> str:
            if self._undefined_obj is jinja2.utils.missing:
                return f"undefined variable {self._undefined_name!r}"
            return f"{self._undefined_name!r} is not defined on the value it was read from"

        def __str__(self) -> str:
            if self._undefined_obj is jinja2.utils.missing and self._undefined_name in lenient:
                return ""
            raise jinja2.UndefinedError(self._problem())

        def __iter__(self) -> Any:
            if self._undefined_name in lenient:
                return iter(())
            raise jinja2.UndefinedError(self._problem())

        def __bool__(self) -> bool:
            if self._undefined_name in lenient:
                return False
            raise jinja2.UndefinedError(self._problem())

    return _Undefined


@functools.lru_cache(maxsize=64)
def _sandbox(lenient: frozenset[str]) -> BoundedSandbox:
    """The sandbox for ``lenient``, shared by every :class:`Renderer` with those names: making
    one (Jinja's environment, its filter table, the undefined class) cost ~25 us, paid by every
    plan compiled (each sweep a daemon accepts). Nothing changes an environment once made, and
    Jinja's environments may be shared between threads."""
    return BoundedSandbox(undefined=_undefined_class(lenient), keep_trailing_newline=True)


class Renderer:
    """Renders template strings; ``lenient`` names may be missing (they render ``""``)."""

    def __init__(self, lenient: Iterable[str] = ()) -> None:
        self.lenient = frozenset(lenient)
        self.env = _sandbox(self.lenient)
        #: Compiled templates by source, and the sources that are only text and names.
        self._templates: dict[str, jinja2.Template] = {}
        self._simple: dict[str, _Simple | None] = {}

    def _template(self, source: str) -> jinja2.Template:
        template = self._templates.get(source)
        if template is None:
            self.env.check_size(source)
            template = self.env.from_string(source)
            if len(self._templates) >= _CACHED_TEMPLATES:
                self._templates.clear()
            self._templates[source] = template
        return template

    def _simple_form(self, source: str) -> _Simple | None:
        """``source`` as text and ``{{ name }}`` parts when it is only that (None: Jinja
        renders it); checked against the token bound like any template, once."""
        if source in self._simple:
            return self._simple[source]
        self.env.check_size(source)
        simple = _split_simple(source)
        if len(self._simple) >= _CACHED_TEMPLATES:
            self._simple.clear()
        self._simple[source] = simple
        return simple

    def _render_simple(self, simple: _Simple, context: Mapping[str, Any]) -> str | None:
        """What Jinja would render for text and ``{{ name }}`` parts: each value through the
        sandbox's ``finalize`` and the output through its bounded ``concat`` (the same
        bounds). None when a name is not in ``context`` (Jinja then says why, or finds it
        among its own globals)."""
        texts, names = simple
        pieces = [texts[0]]
        for name, text in zip(names, texts[1:], strict=True):
            if name not in context:
                return None
            pieces.append(str(self.env.finalize(context[name])))  # type: ignore[misc]
            pieces.append(text)
        return self.env.concat(pieces)

    def render(self, template: str, context: Mapping[str, Any], *, field: str) -> str:
        """Render ``template`` within the sandbox's bounds (``sandbox.py``); errors name
        ``field`` and the offending variable or bound. A template of text and plain
        ``{{ name }}`` parts (most argv items) skips Jinja's per-render machinery."""
        if "{{" not in template and "{%" not in template:
            return template
        try:
            simple = self._simple_form(template)
            if simple is not None:
                # No budget needed: a few names, each finalized and the output measured.
                text = self._render_simple(simple, context)
                if text is not None:
                    return text
            with render_budget():
                return self._template(template).render(context)
        except TemplateLimitError as exc:
            raise SpecError(f"template error: refused: {exc}", field=field) from None
        except jinja2.UndefinedError as exc:
            raise SpecError(str(exc), field=field) from None
        except jinja2.TemplateSyntaxError as exc:
            raise SpecError(f"template syntax error: {exc.message}", field=field) from None
        except jinja2.TemplateError as exc:
            raise SpecError(f"template error: {exc}", field=field) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise SpecError(f"template error: {exc}", field=field) from None
        except (RecursionError, SyntaxError):  # macros calling themselves; absurd nesting
            raise SpecError("template error: nested too deeply", field=field) from None
        except MemoryError:
            raise SpecError("template error: out of memory", field=field) from None

    def argv_items(
        self, items: list[Any] | str | None, context: Mapping[str, Any], *, field: str
    ) -> list[str]:
        """Render ``command`` or ``args`` into argv items (Polyaxon 2.18 rules).

        List items render as text (no literal_eval), non-strings become ``str(x)``, and
        ``None`` and ``""`` are dropped, as is a template that renders ``None`` (an optional
        input with no value), as Polyaxon 2.18 does; an item written ``"None"`` stays an
        argument. A plain string is one item, unless it
        renders to a Python list literal (``"{{ params.as_args }}"``), which spreads into items.
        """
        if items is None:
            return []
        if isinstance(items, str):
            text = self.render(items, context, field=field)
            if text.lstrip().startswith("["):
                try:
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    parsed = None
                if isinstance(parsed, list):
                    return [no_nul(str(x), field) for x in parsed if x is not None and x != ""]
            return [] if text in _DROPPED else [no_nul(text, field)]
        out: list[str] = []
        for index, item in enumerate(items):
            if item is None:
                continue
            if isinstance(item, str):
                text = self.render(item, context, field=f"{field}[{index}]")
                if text == "None" and text != item:
                    continue  # a template rendering None: an optional input left unset
            else:
                text = str(item)
            if text != "":
                out.append(no_nul(text, f"{field}[{index}]"))
        return out
