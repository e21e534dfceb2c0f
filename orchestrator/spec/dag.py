"""Pipelines (``run.kind: dag``): the graph of operations, checked before anything runs, and
each operation turned into a runnable single-operation spec once its upstream has finished.

The contract (``CONTRACT20.md``) is kept as written (``node_spec``, ``display_spec`` and
``condition_holds`` live in ``dag_nodes.py`` and are re-exported here); additions, all optional:
``DagNode.index/base_dir/component_field/refs``, ``DagPlan.levels/source``,
``compile_dag(..., paths=)`` (``globals.*`` paths for the plan-time compile of each node: pass
``run_paths(home)`` as for ``compile_plan``), ``display_spec`` (a node with its upstream values
as ``<ops.X.outputs.Y>`` placeholders, for ``plan``).

Polyaxon's rules (``_flow/run/dag.py``, ``_flow/dags``, ``_flow/params``): a node's upstream
is its ``dependencies``, the operations its params reference (``ref: ops.X``) and those its
``events`` reference; an unknown one is an orphan op; the graph must be acyclic; ``dagRef``
names one of ``run.components``; a reference must name an IO the upstream component declares,
of a compatible type and the same ``isList``; a join param needs an ``isList`` input.
Beyond Polyaxon (which leaves them to its server): operations named in a template
(``{{ ops.X.outputs.Y }}`` in a param value, or in ``conditions``) are upstream too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.dag_nodes import (  # node specs and conditions (re-exported)
    build_node,
    condition_holds,
    display_spec,
    lookup_ref,
    node_spec,
    read_condition,
    reads_dag_context,
)
from orchestrator.spec.dag_refs import (
    GLOBALS_KEYS,
    ParamRef,
    are_compatible,
    ops_in_template,
    parse_param_ref,
)
from orchestrator.spec.decode import decode
from orchestrator.spec.ios import ResolvedIO, is_template, resolve_ios, typed_value
from orchestrator.spec.joins import check_join
from orchestrator.spec.load import LoadedSpec, resolve_component
from orchestrator.spec.resolve import RunPaths, compile_plan
from orchestrator.spec.templating import Renderer

__all__ = [
    "TRIGGERS",
    "DagNode",
    "DagPlan",
    "Upstream",
    "compile_dag",
    "condition_holds",
    "display_spec",
    "is_dag",
    "node_spec",
    "read_condition",
]

#: The name ``engine/op_hooks.py`` imports (kept until it uses ``read_condition``).
_as_bool = read_condition

TRIGGERS = ("all_succeeded", "all_failed", "all_done", "one_succeeded", "one_failed", "one_done")


@dataclass(frozen=True)
class DagNode:
    """One operation of the DAG, its component resolved."""

    name: str
    operation: m.Operation
    component: m.Component
    component_source: str
    upstream: tuple[str, ...]
    trigger: str
    skip_on_upstream_skip: bool
    #: Position in ``run.operations`` (errors name ``run.operations[index]``).
    index: int = 0
    #: Folder the component's relative paths resolve against.
    base_dir: Path = field(default_factory=Path.cwd)
    #: Where the component is written in the DAG's file (``run.components[1]``,
    #: ``run.operations[0].component``); None when it comes from another file.
    component_field: str | None = None
    #: Params that read another operation or the DAG (``ref: ops.X`` / ``ref: dag``).
    refs: Mapping[str, ParamRef] = field(default_factory=dict)

    @property
    def is_sweep(self) -> bool:
        return self.operation.matrix is not None

    @property
    def where(self) -> str:
        return f"run.operations[{self.index}]"


@dataclass
class DagPlan:
    """A compiled pipeline: every node checked, nothing run."""

    spec: LoadedSpec
    nodes: dict[str, DagNode]
    order: list[str]
    concurrency: int | None
    early_stopping: list[Any]
    inputs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: Polyaxon's breadth-first levels (``sort_topologically``); ``order`` flattens them,
    #: each level in the order the operations are written.
    levels: list[list[str]] = field(default_factory=list)
    #: The file that holds the DAG (the component's file when the top level is an operation
    #: with a pathRef): node errors name it.
    source: str = ""
    #: ``globals.*`` paths for the node compiles.
    paths: RunPaths | None = None

    def downstream(self, name: str) -> list[str]:
        """The nodes that depend on ``name`` directly, in topological order."""
        return [n for n in self.order if name in self.nodes[n].upstream]

    @property
    def name(self) -> str | None:
        return self.spec.operation.name or self.spec.component.name


@dataclass(frozen=True)
class Upstream:
    """What the engine knows of a finished node (read from the journal)."""

    name: str
    state: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    run_uuid: str | None


def is_dag(spec: LoadedSpec) -> bool:
    """Whether the spec's component runs a DAG (``run.kind: dag``)."""
    return isinstance(spec.component.run, m.Dag)


# --------------------------------------------------------------------------- compile
def compile_dag(
    spec: LoadedSpec,
    overrides: Mapping[str, str] | None = None,
    *,
    paths: RunPaths | None = None,
) -> DagPlan:
    """Everything checkable before anything runs; errors are one-line :class:`SpecError`
    naming the file and field (``run.operations[2].dependencies``)."""
    try:
        return _compile(spec, dict(overrides or {}), paths)
    except SpecError as exc:
        raise exc.with_file(_dag_file(spec)) from None


def _dag_file(spec: LoadedSpec) -> str:
    return spec.component_source


def _dag_base(spec: LoadedSpec) -> Path:
    """Where relative paths of the DAG's operations resolve: the folder of the file that
    holds the DAG."""
    if spec.component_source == spec.source:
        return spec.base_dir
    candidate = Path(spec.component_source)
    return candidate.parent if candidate.is_file() else spec.base_dir


def _compile(spec: LoadedSpec, overrides: dict[str, str], paths: RunPaths | None) -> DagPlan:
    run = spec.component.run
    if not isinstance(run, m.Dag):
        raise SpecError(
            f"not a DAG (run.kind is {run.__struct_config__.tag}): compile it with compile_plan",
            field="run.kind",
        )
    if spec.operation.matrix is not None:
        raise SpecError(
            "a matrix over a whole DAG is not supported yet; put the matrix on an operation "
            "inside the DAG",
            field="matrix",
            file=spec.source,
        )
    inputs = _dag_inputs(spec, overrides)
    ops = _decode_operations(run.operations)
    refs = {op.name or "": _param_refs(op, i) for i, op in enumerate(ops)}
    upstream = {op.name or "": _upstream(op, refs[op.name or ""]) for op in ops}
    _check_orphans(ops, upstream)
    levels = _sort_topologically([op.name or "" for op in ops], upstream)
    if not ops:
        raise SpecError(
            "the pipeline is not valid, it has no ops (a DAG needs at least one operation)",
            field="run.operations",
        )
    components = _decode_components(run.components)
    nodes: dict[str, DagNode] = {}
    base = _dag_base(spec)
    for index, op in enumerate(ops):
        name = op.name or ""
        nodes[name] = _node(spec, op, index, components, base, upstream[name], refs[name])
    order = [name for level in levels for name in level]
    plan = DagPlan(
        spec=spec,
        nodes=nodes,
        order=order,
        concurrency=run.concurrency,
        early_stopping=_early_stopping(run.early_stopping),
        inputs=inputs,
        levels=levels,
        source=_dag_file(spec),
        paths=paths,
    )
    for name in order:
        _check_refs(plan, nodes[name])
        _check_joins(nodes[name])
        _check_conditions(nodes[name])
    for name in order:
        _check_node(plan, nodes[name])
    plan.warnings = _warnings(plan)
    return plan


def _dag_inputs(spec: LoadedSpec, overrides: Mapping[str, str]) -> dict[str, Any]:
    """The DAG component's own inputs: defaults, then the operation's params and ``-P``
    (what ``ref: dag`` and ``{{ dag.inputs.X }}`` read)."""
    try:
        ios = resolve_ios(spec.component)
    except SpecError as exc:
        raise exc.with_file(spec.component_source) from None
    by_name = {io.name: io for io in ios}
    values: dict[str, Any] = {io.name: io.default for io in ios if io.has_default}
    params = dict(spec.operation.params or {})
    params.update({k: m.Param(value=v) for k, v in overrides.items()})
    given: set[str] = set()
    for key, param in params.items():
        where = f"-P {key}" if key in overrides else f"params.{key}"
        if param.ref is not None:
            raise SpecError(
                "a DAG's own params cannot reference other runs locally",
                field=f"{where}.ref",
                file=spec.source,
            )
        value = None if param.value is msgspec.UNSET else param.value
        io = by_name.get(key)
        if io is None:
            if param.context_only:
                values[key] = value
                continue
            raise SpecError(f"no input or output named {key!r}", field=where, file=spec.source)
        given.add(key)
        if is_template(value):
            values[key] = value
            continue
        try:
            values[key] = typed_value(value, io, where if key in overrides else f"{where}.value")
        except SpecError as exc:
            raise exc.with_file(spec.source) from None
    for io in ios:
        if not io.is_output and io.required and io.name not in given:
            raise SpecError(
                f"input {io.name!r} is required, no param was passed",
                field="params",
                file=spec.source,
            )
    return values


def _decode_operations(raw: list[Any] | None) -> list[m.Operation]:
    ops: list[m.Operation] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw or []):
        where = f"run.operations[{index}]"
        if isinstance(entry, dict) and entry.get("kind", "operation") != "operation":
            raise SpecError(f"expected an operation, got kind {entry['kind']!r}", field=where)
        op = decode(entry, m.Operation, where)
        if not op.name:
            raise SpecError(
                "an operation of a DAG needs a name (other operations refer to it by name)",
                field=f"{where}.name",
            )
        if not re.match(r"^[-a-zA-Z0-9_]+\Z", op.name):
            raise SpecError(
                f"expected letters, digits, '-' or '_', got {op.name!r}", field=f"{where}.name"
            )
        if op.name in seen:
            raise SpecError(
                f"the pipeline has multiple ops with the same name {op.name!r}",
                field=f"{where}.name",
            )
        seen.add(op.name)
        ops.append(op)
    return ops


def _decode_components(raw: list[Any] | None) -> dict[str, tuple[int, m.Component]]:
    components: dict[str, tuple[int, m.Component]] = {}
    for index, entry in enumerate(raw or []):
        where = f"run.components[{index}]"
        if isinstance(entry, dict) and entry.get("kind", "component") != "component":
            raise SpecError(f"expected a component, got kind {entry['kind']!r}", field=where)
        component = decode(entry, m.Component, where)
        if not component.name:
            raise SpecError(
                "a component of a DAG needs a name (operations refer to it by dagRef)",
                field=f"{where}.name",
            )
        if component.name in components:
            raise SpecError(
                f"the pipeline has multiple components with the same name {component.name!r}",
                field=f"{where}.name",
            )
        components[component.name] = (index, component)
    return components


def _early_stopping(raw: list[Any] | None) -> list[Any]:
    if not raw:
        return []
    decoded = decode(raw, list[m.EarlyStopping], "run.earlyStopping")
    return list(decoded)


def _param_refs(op: m.Operation, index: int) -> dict[str, ParamRef]:
    refs: dict[str, ParamRef] = {}
    for name, param in (op.params or {}).items():
        ref = parse_param_ref(name, param, f"run.operations[{index}].params.{name}")
        if ref is not None:
            refs[name] = ref
    return refs


def _upstream(op: m.Operation, refs: Mapping[str, ParamRef]) -> list[str]:
    """Polyaxon's ``_get_op_upstream`` (dependencies, ops refs of params and events), plus
    the operations a param template or the conditions name; in the order first named."""
    names: list[str] = list(op.dependencies or [])
    names += [ref.op for ref in refs.values() if ref.op is not None]
    for event in op.events or []:
        parts = event.ref.split(".")
        if len(parts) == 2 and parts[0] == "ops":
            names.append(parts[1])
    for param in (op.params or {}).values():
        if param.ref is None:
            names += sorted(ops_in_template(param.value))
    names += sorted(ops_in_template(op.conditions))
    return list(dict.fromkeys(names))


def _check_orphans(ops: list[m.Operation], upstream: Mapping[str, list[str]]) -> None:
    known = {op.name for op in ops}
    for index, op in enumerate(ops):
        missing = [u for u in upstream[op.name or ""] if u not in known]
        if missing:
            raise SpecError(
                f"the pipeline has a non valid dag, it contains orphan ops: {missing[0]!r} is "
                f"not an operation of this DAG (named by {op.name!r} in its dependencies, a "
                "param, an event or a condition)",
                field=f"run.operations[{index}]",
            )


def _sort_topologically(names: list[str], upstream: Mapping[str, list[str]]) -> list[list[str]]:
    """Polyaxon's breadth-first levels; within a level, the order the operations are
    written (Polyaxon's sets give no order). A cycle is named."""
    levels: list[list[str]] = []
    done: set[str] = set()
    left = list(names)
    while left:
        level = [n for n in left if all(u in done for u in upstream[n])]
        if not level:
            raise SpecError(
                f"the pipeline's graph is not acyclic: {_cycle(left, upstream)}",
                field="run.operations",
            )
        levels.append(level)
        done.update(level)
        left = [n for n in left if n not in done]
    return levels


def _cycle(left: list[str], upstream: Mapping[str, list[str]]) -> str:
    """One cycle among the nodes that could not be sorted, as ``A → B → A``."""
    remaining = set(left)
    path: list[str] = []
    node = left[0]
    while node not in path:
        path.append(node)
        node = next(u for u in upstream[node] if u in remaining)
    cycle = [*path[path.index(node) :], node]
    return " → ".join(reversed(cycle))


def _node(
    spec: LoadedSpec,
    op: m.Operation,
    index: int,
    components: Mapping[str, tuple[int, m.Component]],
    base: Path,
    upstream: list[str],
    refs: dict[str, ParamRef],
) -> DagNode:
    where = f"run.operations[{index}]"
    dag_file = _dag_file(spec)
    by_name = {name: component for name, (_, component) in components.items()}
    try:
        component, source = resolve_component(op, dag_file, base, by_name)
    except SpecError as exc:
        raise exc.under(where) if exc.file == dag_file else exc from None
    component_field: str | None = None
    node_base = base
    if op.dag_ref is not None:
        component_field = f"run.components[{components[op.dag_ref][0]}]"
    elif op.component is not None:
        component_field = f"{where}.component"
    elif op.path_ref is not None:
        node_base = Path(source).parent
    if isinstance(component.run, m.Dag):
        raise SpecError("a DAG inside a DAG is not supported yet", field=f"{where}", file=dag_file)
    return DagNode(
        name=op.name or "",
        operation=op,
        component=component,
        component_source=source,
        upstream=tuple(upstream),
        trigger=op.trigger or "all_succeeded",
        skip_on_upstream_skip=bool(op.skip_on_upstream_skip),
        index=index,
        base_dir=node_base,
        component_field=component_field,
        refs=refs,
    )


# --------------------------------------------------------------------------- ref checks
@dataclass(frozen=True)
class _Known:
    """What Polyaxon's compile-time context says of a reference: its type and isList."""

    type: str | None
    is_list: bool


def _context_entry(plan: DagPlan, ref: ParamRef) -> _Known | None:
    """Polyaxon's ``V1Dag._context`` entry for ``ref.searchable`` (None: no such entry)."""
    if ref.op is not None:
        component = plan.nodes[ref.op].component
        sections = {"inputs": component.inputs or [], "outputs": component.outputs or []}
    else:
        sections = {"inputs": plan.spec.component.inputs or []}
    head, rest = ref.path[0], ref.path[1:]
    if not rest:
        if head in sections:
            return _Known("dict", False)
        return _Known("str", False) if head in ("globals", "artifacts", "io") else None
    if head == "globals":
        return _Known("str", False) if rest[0] in GLOBALS_KEYS and len(rest) == 1 else None
    if head == "artifacts":
        ios = [*sections["inputs"], *sections.get("outputs", [])]
        found = [io for io in ios if io.name == rest[0] and io.type == "artifacts"]
        return _Known("artifacts", bool(found[0].is_list)) if found else None
    for io in sections.get(head, []):
        if io.name == rest[0] and len(rest) == 1:
            return _Known(io.type, bool(io.is_list))
    return None


def _check_refs(plan: DagPlan, node: DagNode) -> None:
    """Polyaxon's ``ParamSpec.validate_ref``: the upstream declares what is read, of a type
    the input takes, and ``isList`` alike; then what local runs cannot do."""
    ios = {io.name: io for io in [*(node.component.inputs or []), *(node.component.outputs or [])]}
    _check_template_reads(plan, node)
    for name, ref in node.refs.items():
        where = f"{node.where}.params.{name}"
        if ref.op is not None and plan.nodes[ref.op].is_sweep:
            raise SpecError(
                f"{ref.op!r} is a sweep (it has a matrix): its runs' values are read with "
                "joins (joins: [{query: ..., params: ...}]), not ref: ops.NAME",
                field=f"{where}.ref",
            )
        if ref.path[0] == "artifacts":
            raise SpecError(
                f"value {ref.text!r}: artifacts references are not supported locally",
                field=f"{where}.value",
            )
        io = ios.get(name)
        param = (node.operation.params or {})[name]
        if ref.template or io is None or param.context_only:
            continue
        known = _context_entry(plan, ref)
        origin = f"operation {ref.op!r}" if ref.op is not None else "the DAG"
        if known is None:
            raise SpecError(
                f"param {name!r} has a ref value {ref.text!r}, but {origin} has no such "
                f"information ({_declared(plan, ref)})",
                field=f"{where}.value",
            )
        if not are_compatible(io.type, known.type):
            raise SpecError(
                f"param {name!r} has an input type {io.type!r} that does not correspond to the "
                f"type of {ref.text!r} received from {origin}: {known.type!r}",
                field=f"{where}.value",
            )
        if bool(io.is_list) != known.is_list:
            raise SpecError(
                f"param {name!r} is {'' if io.is_list else 'not '}a list (isList) but "
                f"{ref.text!r} received from {origin} is{'' if known.is_list else ' not'}",
                field=f"{where}.value",
            )


def _check_template_reads(plan: DagPlan, node: DagNode) -> None:
    """A param template reading a sweep's values (``{{ ops.sweep.outputs.loss }}``) has no
    one value to read: refused as ``ref: ops.sweep`` is."""
    for name, param in (node.operation.params or {}).items():
        if param.ref is not None or not is_template(param.value):
            continue
        for op in ops_in_template(param.value):
            reads = rf"""ops\s*(?:\.\s*{re.escape(op)}|\[\s*['"]{re.escape(op)}['"]\s*\])"""
            if plan.nodes[op].is_sweep and re.search(
                reads + r"\s*\.\s*(?:outputs|inputs|io)\b", param.value
            ):
                raise SpecError(
                    f"{op!r} is a sweep (it has a matrix): its runs' values are read with joins "
                    "(joins: [{query: ..., params: ...}]), not {{ ops.NAME... }}",
                    field=f"{node.where}.params.{name}.value",
                )


def _declared(plan: DagPlan, ref: ParamRef) -> str:
    if ref.op is not None:
        component = plan.nodes[ref.op].component
        outputs = [io.name for io in component.outputs or []]
        inputs = [io.name for io in component.inputs or []]
        return f"its outputs: {', '.join(outputs) or 'none'}; inputs: {', '.join(inputs) or 'none'}"
    return f"its inputs: {', '.join(io.name for io in plan.spec.component.inputs or []) or 'none'}"


def _check_joins(node: DagNode) -> None:
    """The join itself (``joins.check_join``), then Polyaxon's rule: a join param feeds an
    input declared ``isList`` (or of type artifacts), unless it is ``contextOnly``."""
    ios = {io.name: io for io in node.component.inputs or []}
    for j, join in enumerate(node.operation.joins or []):
        where = f"{node.where}.joins[{j}]"
        check_join(join, where)  # query, sort, limit, offset, what each param reads
        for name, param in (join.params or {}).items():
            if param.context_only:
                continue
            io = ios.get(name)
            if io is None:
                raise SpecError(
                    f"no input named {name!r} (set contextOnly: true to pass it through)",
                    field=f"{where}.params.{name}",
                )
            if not io.is_list and io.type != "artifacts":
                raise SpecError(
                    f"param {name!r} has an input type {io.type!r}; it does not expect a list "
                    "of values from the join: add isList: true to its input",
                    field=f"{where}.params.{name}",
                )


def _check_conditions(node: DagNode) -> None:
    """A condition's template must parse now (it renders once the upstream has finished)."""
    text = node.operation.conditions
    if text is None:
        return
    try:
        Renderer().env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise SpecError(
            f"template syntax error: {exc.message}", field=f"{node.where}.conditions"
        ) from None


def _warnings(plan: DagPlan) -> list[str]:
    out: list[str] = []
    for node in plan.nodes.values():
        if node.operation.joins and not node.upstream:
            out.append(
                f"{node.where} ({node.name}): joins select runs finished before it starts, and "
                "it depends on nothing (add dependencies: [...] to wait for the runs it joins)"
            )
    return out


# --------------------------------------------------------------------------- plan-time check
def _sample(io: ResolvedIO | None, text: str) -> Any:
    """A value of the input's type standing for an upstream value not known yet."""
    if io is None:
        return text
    base = io.type.base
    if base.name == "list":
        return []
    return {"int": 0, "float": 0.0, "bool": False, "dict": {}}.get(base.name, text)


def _check_node(plan: DagPlan, node: DagNode) -> None:
    """Compile the node with stand-ins for its upstream values, so its template and type
    errors surface at plan time; an error only a stand-in causes is no error."""
    try:
        ios = {io.name: io for io in resolve_ios(node.component)}
    except SpecError as exc:
        raise _located(exc, node) from None
    stand_ins: set[str] = set()

    def value_of(param_name: str, ref: ParamRef) -> Any:
        if ref.op is None:
            return lookup_ref(plan, node, param_name, ref, {})
        stand_ins.add(param_name)
        return _sample(ios.get(param_name), ref.placeholder)

    spec = build_node(plan, node, value_of, None, {})
    params = dict(spec.operation.params or {})
    for param_name, param in params.items():
        if reads_dag_context(param):
            params[param_name] = msgspec.structs.replace(
                param, value=_sample(ios.get(param_name), "<upstream>")
            )
            stand_ins.add(param_name)
    for join in node.operation.joins or []:
        for param_name, param in (join.params or {}).items():
            if param_name not in params:
                params[param_name] = m.Param(value=[], context_only=param.context_only)
                stand_ins.add(param_name)
    spec.operation = msgspec.structs.replace(spec.operation, params=params or None)
    try:
        compile_plan(spec, paths=plan.paths)
    except SpecError as exc:
        if any((exc.field or "").startswith(f"params.{n}") for n in stand_ins):
            return
        if stand_ins and "undefined" not in exc.detail and _mentions(exc.detail, stand_ins):
            return
        raise _located(exc, node) from None


def _mentions(detail: str, names: set[str]) -> bool:
    return any(repr(n) in detail for n in names)


def _located(exc: SpecError, node: DagNode) -> SpecError:
    """A node's compile error, its field placed in the DAG's file where the faulty part is
    written there (``run.operations[1].params.lr``, ``run.components[0].inputs[0]``)."""
    detail = f"operation {node.name!r}: {exc.detail}"
    field = exc.field or ""
    in_component = field.startswith(("run.", "inputs", "outputs"))
    if in_component and node.component_field is not None:
        return SpecError(detail, file=exc.file, field=f"{node.component_field}.{field}")
    if not in_component and not field.startswith("-P"):
        return SpecError(detail, file=exc.file, field=f"{node.where}.{field}".rstrip("."))
    return SpecError(detail, file=exc.file, field=exc.field)
