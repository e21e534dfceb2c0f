"""A pipeline's node as a runnable single-operation spec, and its conditions: references
replaced by upstream values (or placeholders for ``plan``), ``{{ ops... }}`` / ``{{ dag... }}``
rendered, DAG scheduling fields dropped, the DAG's cache inherited.

Split from ``dag.py`` (which re-exports ``node_spec``, ``display_spec``, ``condition_holds``).
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.dag_refs import GLOBALS_KEYS, ParamRef
from orchestrator.spec.ios import is_template, resolve_ios, typed_value
from orchestrator.spec.load import LoadedSpec, with_ignored
from orchestrator.spec.templating import Renderer

if TYPE_CHECKING:
    from orchestrator.spec.dag import DagNode, DagPlan, Upstream

__all__ = [
    "build_node",
    "condition_holds",
    "display_spec",
    "lookup_ref",
    "node_spec",
    "read_condition",
    "reads_dag_context",
    "template_context",
]

#: A param value that reads the DAG's context (``{{ ops.X... }}``, ``{{ dag.inputs.Y }}``):
#: rendered when the node is built, before the node's own templates.
_DAG_CONTEXT = re.compile(r"\b(?:ops|dag)\s*[.\[]")
#: Operation fields that belong to the DAG's scheduling, not to the node's run.
_DAG_ONLY = {
    "dependencies": None,
    "trigger": None,
    "conditions": None,
    "skip_on_upstream_skip": None,
    "events": None,
    "joins": None,
    "schedule": None,
    "dag_ref": None,
    "hub_ref": None,
    "url_ref": None,
    "path_ref": None,
}
_FALSE_TEXT = frozenset({"", "false", "none", "null", "0", "no", "off"})
_TRUE_TEXT = frozenset({"true", "1", "yes", "on"})


# --------------------------------------------------------------------------- node specs
def node_spec(
    plan: DagPlan,
    name: str,
    upstream: Mapping[str, Upstream],
    joined: Mapping[str, m.Param] | None = None,
) -> LoadedSpec:
    """The node as a runnable single operation for ``compile_plan``: its references replaced
    by the upstream values (a value an upstream did not give is a SpecError naming it)."""
    node = plan.nodes[name]

    def value_of(param_name: str, ref: ParamRef) -> Any:
        return lookup_ref(plan, node, param_name, ref, upstream)

    context = template_context(plan, upstream)
    return build_node(plan, node, value_of, context, joined or {})


def display_spec(plan: DagPlan, name: str) -> LoadedSpec:
    """The node as ``plan`` shows it before anything ran: what upstream operations will give
    appears as ``<ops.X.outputs.Y>`` (its input then typed as text, so the placeholder shows
    in the command line too); ``ref: dag`` values are known and resolved."""
    node = plan.nodes[name]
    shown: set[str] = set()

    def value_of(param_name: str, ref: ParamRef) -> Any:
        if ref.op is None:
            return lookup_ref(plan, node, param_name, ref, {})
        shown.add(param_name)
        return ref.placeholder

    spec = build_node(plan, node, value_of, None, {})
    params = dict(spec.operation.params or {})
    for param_name, param in params.items():
        if reads_dag_context(param):
            params[param_name] = msgspec.structs.replace(param, value=f"<{param.value}>")
            shown.add(param_name)
    for j, join in enumerate(node.operation.joins or []):
        for param_name, param in (join.params or {}).items():
            if param_name not in params:
                text = f"<joins[{j}].{param.value}>"
                params[param_name] = m.Param(value=text, context_only=param.context_only)
                shown.add(param_name)
    spec.operation = msgspec.structs.replace(spec.operation, params=params)
    spec.component = _as_text_inputs(spec.component, shown)
    return spec


def reads_dag_context(param: m.Param) -> bool:
    return param.ref is None and is_template(param.value) and bool(_DAG_CONTEXT.search(param.value))


def build_node(
    plan: DagPlan,
    node: DagNode,
    value_of: Callable[[str, ParamRef], Any],
    context: Mapping[str, Any] | None,
    joined: Mapping[str, m.Param],
) -> LoadedSpec:
    """The node's operation with refs resolved, DAG scheduling fields dropped, the component
    inline and the DAG's cache inherited where the node sets none."""
    params: dict[str, m.Param] = {}
    renderer = Renderer()
    text_inputs = {io.name for io in node.component.inputs or [] if _is_text(io)}
    for param_name, param in (node.operation.params or {}).items():
        ref = node.refs.get(param_name)
        if ref is not None:
            params[param_name] = msgspec.structs.replace(
                param, ref=None, value=value_of(param_name, ref)
            )
        elif context is not None and reads_dag_context(param):
            where = f"{node.where}.params.{param_name}.value"
            try:
                text = renderer.render(param.value, context, field=where)
            except SpecError as exc:
                raise exc.with_file(plan.source) from None
            value = text if param_name in text_inputs else _literal(text)
            params[param_name] = msgspec.structs.replace(param, value=value)
        else:
            params[param_name] = param
    for param_name, param in joined.items():
        params.setdefault(param_name, param)  # Polyaxon: the op's own params win over joins
    operation = msgspec.structs.replace(
        node.operation,
        params=params or None,
        component=node.component,
        cache=_inherited_cache(plan, node),
        **_DAG_ONLY,
    )
    loaded = LoadedSpec(
        source=plan.source,
        operation=operation,
        component=node.component,
        component_source=node.component_source,
        base_dir=node.base_dir,
    )
    return with_ignored(loaded)


def _is_text(io: m.IO) -> bool:
    """Whether an input takes text as it is written (a rendered value stays a string)."""
    return not io.is_list and io.type in ("str", "path", "s3", "gcs", "wasb", "uri", "image")


def _literal(text: str) -> Any:
    """A rendered value read back as Polyaxon's ``parse_expression`` reads it: ``0.25`` is a
    number, ``[1, 2]`` a list, ``{'a': 1}`` a dict; anything else stays text."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _inherited_cache(plan: DagPlan, node: DagNode) -> m.Cache | None:
    """The node's cache section, else its component's, else the DAG's (operation, then
    component): a pipeline's cache settings reach its operations."""
    if node.operation.cache is not None or node.component.cache is not None:
        return node.operation.cache
    return plan.spec.operation.cache or plan.spec.component.cache


def _as_text_inputs(component: m.Component, names: set[str]) -> m.Component:
    """``component`` with the named inputs typed as plain text (for placeholders)."""
    if not names:
        return component

    def loosen(io: m.IO) -> m.IO:
        if io.name not in names:
            return io
        return msgspec.structs.replace(
            io, type="str", is_list=None, is_flag=None, validation=None, options=None
        )

    inputs = [loosen(io) for io in component.inputs or []] or None
    outputs = [loosen(io) for io in component.outputs or []] or None
    return msgspec.structs.replace(component, inputs=inputs, outputs=outputs)


def lookup_ref(
    plan: DagPlan,
    node: DagNode,
    param_name: str,
    ref: ParamRef,
    upstream: Mapping[str, Upstream],
) -> Any:
    """The value a reference reads, from a finished upstream node or the DAG's inputs."""
    where = f"{node.where}.params.{param_name}"
    if ref.op is None:
        source: dict[str, Any] = {"inputs": plan.inputs, "outputs": {}}
        glob = {"name": plan.name}
        origin = "the DAG"
    else:
        up = upstream.get(ref.op)
        if up is None:
            raise SpecError(f"operation {ref.op!r} has not finished", field=f"{where}.ref")
        source = {"inputs": up.inputs, "outputs": up.outputs}
        glob = {"name": up.name, "uuid": up.run_uuid, "status": up.state}
        origin = f"operation {ref.op!r}"
    head, rest = ref.path[0], ref.path[1:]
    if head == "io":
        return {**source["inputs"], **source["outputs"]}
    section = glob if head == "globals" else source.get(head)
    if section is None:
        raise SpecError(f"{ref.text!r} is not supported locally", field=f"{where}.value")
    if not rest:
        return dict(section)
    if rest[0] not in section:
        if head == "globals" and rest[0] in GLOBALS_KEYS:
            return None
        given = ", ".join(section) or "none"
        raise SpecError(
            f"{origin} gave no {head[:-1] if head != 'globals' else 'global'} {rest[0]!r} "
            f"(it gave: {given})",
            field=f"{where}.value",
        )
    return section[rest[0]]


def template_context(plan: DagPlan, upstream: Mapping[str, Upstream]) -> dict[str, Any]:
    """What ``{{ ops.X... }}`` and ``{{ dag... }}`` read in a param value or a condition."""
    ops = {
        name: {
            "inputs": up.inputs,
            "outputs": up.outputs,
            "io": {**up.inputs, **up.outputs},
            "globals": {"name": up.name, "uuid": up.run_uuid, "status": up.state},
            "status": up.state,
        }
        for name, up in upstream.items()
    }
    dag = {"inputs": plan.inputs, "globals": {"name": plan.name}}
    return {"ops": ops, "dag": dag}


# --------------------------------------------------------------------------- conditions
def condition_holds(plan: DagPlan, name: str, upstream: Mapping[str, Upstream]) -> bool:
    """Render the node's ``conditions`` (Jinja) against its params (upstream values
    resolved), ``params.X``, ``ops.X...`` and ``dag...``; no conditions holds. The text must
    read as a boolean (``True``/``false``/``1``/``0``/empty...): anything else is an error
    naming ``run.operations[i].conditions``."""
    node = plan.nodes[name]
    text = node.operation.conditions
    if text is None:
        return True
    where = f"{node.where}.conditions"
    try:
        spec = node_spec(plan, name, upstream)
        values = _param_values(spec)
        context = {**values, "params": values, **template_context(plan, upstream)}
        rendered = Renderer().render(text, context, field=where).strip()
    except SpecError as exc:
        raise SpecError(exc.detail, file=plan.source, field=where) from None
    return read_condition(rendered, where, plan.source)


def _param_values(spec: LoadedSpec) -> dict[str, Any]:
    """The node's params as values (typed by ``compile_plan``'s rules where it compiles)."""
    values = {
        k: (None if p.value is msgspec.UNSET else p.value)
        for k, p in (spec.operation.params or {}).items()
    }
    try:
        ios = resolve_ios(spec.component)
    except SpecError:
        return values
    for io in ios:
        if io.name in values and not is_template(values[io.name]):
            with contextlib.suppress(SpecError):  # compile_plan reports it, not the condition
                values[io.name] = typed_value(values[io.name], io, f"params.{io.name}")
        elif io.name not in values and io.has_default and not io.is_output:
            values[io.name] = io.default
    return values


def read_condition(text: str, where: str, source: str) -> bool:
    """A rendered condition as a boolean (``True``/``false``/``1``/``0``/empty/``None``...);
    any other text is a SpecError naming ``where`` (hooks' conditions read the same way)."""
    lowered = text.lower()
    if lowered in _FALSE_TEXT:
        return False
    if lowered in _TRUE_TEXT:
        return True
    try:
        literal = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        literal = text
    if isinstance(literal, bool | int | float):
        return bool(literal)
    raise SpecError(
        f"expected the condition to render a boolean (true/false), got {text[:80]!r}",
        field=where,
        file=source,
    )
