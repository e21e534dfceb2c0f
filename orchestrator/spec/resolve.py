"""From a loaded spec and ``-P`` overrides to a lazy stream of fully rendered runs.

:func:`compile_plan` checks everything that can be checked before anything runs: input
declarations (``ios.py``), every param and every mapping entry against its input's type,
hyperparameter kinds against input types, required inputs. :class:`Plan` then renders runs one
at a time, so a 10^6-point grid costs memory for one run, not for the grid.

Value precedence, as in Polyaxon: input ``value`` < top-level ``params`` (and ``-P``) < matrix.
"""

from __future__ import annotations

import ast
import hashlib
import uuid as uuid_module
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgspec

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.entry_shapes import EntryShapes
from orchestrator.spec.hyperparams import DATE_KINDS, NUMERIC_KINDS
from orchestrator.spec.ios import ResolvedIO, is_template, resolve_ios, typed_value
from orchestrator.spec.load import LoadedSpec
from orchestrator.spec.matrix import Expansion, expand_matrix
from orchestrator.spec.resources import ResourceRequest, request_from_resources
from orchestrator.spec.templating import (
    ParamView,
    Renderer,
    as_arg,
    as_str,
    no_nul,
    to_string,
)

__all__ = ["Plan", "ResolvedIO", "RunPaths", "RunSpec", "compile_plan"]


class RunSpec(msgspec.Struct, kw_only=True):
    """One configuration, ready to execute."""

    index: int
    uuid: str
    #: Every input's final typed value, plus pass-through keys (outputs are results, not here).
    params: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    working_dir: str | None
    #: ``run.init`` entries, rendered like the container.
    init: list[m.Init] = msgspec.field(default_factory=list)
    #: The component plus the typed params: identifies the configuration independently of its
    #: position in the matrix (cache keys build on it).
    config_hash: str = ""
    #: The typed params alone: what resume matches on (the component is checked separately).
    params_hash: str = ""


#: A run's local paths behind ``globals.*`` (``context_path``, ``run_outputs_path``...), by run
#: uuid. Given by the caller (the store knows the folder layout; the spec layer does not).
RunPaths = Callable[[str], Mapping[str, str]]


#: The run uuid a mapping entry is checked with (it runs later with its own).
_CHECK_UUID = "0" * 32


def _no_paths(run_uuid: str) -> Mapping[str, str]:
    return {}


def _param_value(param: m.Param, where: str) -> Any:
    if param.ref is not None:
        raise SpecError("refs to other runs are not supported locally", field=f"{where}.ref")
    return None if param.value is msgspec.UNSET else param.value


@dataclass
class Plan:
    """A compiled operation: checked up front, rendered lazily run by run."""

    spec: LoadedSpec
    ios: list[ResolvedIO]
    #: Values fixed for every run (defaults, then params and -P), typed.
    base_values: dict[str, Any]
    #: Pass-through params (contextOnly, or matrix keys that are not IOs).
    context_values: dict[str, Any]
    expansion: Expansion | None
    paths: RunPaths
    renderer: Renderer
    #: Sweep-level name, shown in globals.
    name: str | None = None
    _component_json: bytes = field(default=b"", repr=False)
    #: Inputs given by params or -P (a mapping entry need not repeat them).
    _given: set[str] = field(default_factory=set, repr=False)
    #: What the user should hear before anything runs (a ``-P`` the matrix overrides), one
    #: line each; the command line prints them.
    warnings: list[str] = field(default_factory=list)
    #: What each run needs of the machine (``container.resources``), checked at compile time.
    request: ResourceRequest = field(default_factory=ResourceRequest)

    def __len__(self) -> int:
        return len(self.expansion) if self.expansion is not None else 1

    @property
    def concurrency(self) -> int | None:
        matrix = self.spec.operation.matrix
        return matrix.concurrency if matrix is not None else None

    def suggestions(self) -> Iterator[dict[str, Any]]:
        if self.expansion is None:
            return iter([{}])
        return iter(self.expansion)

    def runs(self, *, uuids: Iterator[str] | None = None) -> Iterator[RunSpec]:
        """Render every run, lazily, in matrix order."""
        for index, suggestion in enumerate(self.suggestions()):
            run_uuid = next(uuids) if uuids is not None else uuid_module.uuid4().hex
            yield self.render(index, suggestion, run_uuid)

    @cached_property
    def _by_name(self) -> dict[str, ResolvedIO]:
        """The inputs and outputs by name (read for every run: built once)."""
        return {io.name: io for io in self.ios}

    # ------------------------------------------------------------------ per run
    def values_for(self, index: int, suggestion: Mapping[str, Any]) -> dict[str, Any]:
        """The typed values of one run: base values overridden by the matrix suggestion."""
        by_name = self._by_name
        values = dict(self.base_values)
        context = dict(self.context_values)
        for key, raw in suggestion.items():
            io = by_name.get(key)
            if io is None:
                context[key] = _plain(raw)
            elif is_template(raw):
                values[key] = raw
            else:
                try:
                    values[key] = typed_value(_parsed_for(raw, io), io, "")
                except SpecError as exc:  # its field, built only now (a big mapping is cheaper)
                    exc.field = f"{self._suggestion_path(index)}.{key}"
                    raise
        return {**values, **context}

    def _suggestion_path(self, index: int) -> str:
        matrix = self.spec.operation.matrix
        if isinstance(matrix, m.Mapping):
            return f"matrix.values[{index}]"
        return "matrix.params"

    def render(
        self,
        index: int,
        suggestion: Mapping[str, Any],
        run_uuid: str,
        values: dict[str, Any] | None = None,
    ) -> RunSpec:
        """Render one run (``values``: :meth:`values_for` of it, when already computed);
        errors name the file that holds the faulty field."""
        try:
            return self._render(index, suggestion, run_uuid, values)
        except SpecError as exc:
            field = exc.field or ""
            in_component = field.startswith(("run.", "inputs", "outputs"))
            raise exc.with_file(
                self.spec.component_source if in_component else self.spec.source
            ) from None

    def _render(
        self,
        index: int,
        suggestion: Mapping[str, Any],
        run_uuid: str,
        values: dict[str, Any] | None,
    ) -> RunSpec:
        values = dict(values) if values is not None else self.values_for(index, suggestion)
        glob = self._globals(index, run_uuid, with_paths=self._uses_globals(values))
        by_name = self._by_name
        # Values written as templates (delayed validation) render against globals first.
        for name, value in list(values.items()):
            if is_template(value):
                text = self.renderer.render(
                    value, {"globals": glob, **values}, field=f"params.{name}"
                )
                io = by_name.get(name)
                values[name] = typed_value(text, io, f"params.{name}") if io else text
        context = self._context(values, glob)
        run = self.spec.component.run
        assert isinstance(run, m.Job | m.Service)
        container = run.container or m.Container()
        argv = self.renderer.argv_items(container.command, context, field="run.container.command")
        argv += self.renderer.argv_items(container.args, context, field="run.container.args")
        env: dict[str, str] = {}
        for i, var in enumerate(container.env or []):
            if var.value is not None:
                where = f"run.container.env[{i}]"
                env[no_nul(var.name, f"{where}.name")] = no_nul(
                    _env_text(
                        self.renderer.render(var.value, context, field=f"{where}.value")
                        if isinstance(var.value, str)
                        else var.value
                    ),
                    f"{where}.value",
                )
        working_dir = None
        if container.working_dir:
            working_dir = no_nul(
                self.renderer.render(
                    container.working_dir, context, field="run.container.workingDir"
                ),
                "run.container.workingDir",
            )
        init = [self._render_init(entry, context, i) for i, entry in enumerate(run.init or [])]
        outputs = {io.name for io in self.ios if io.is_output}
        params = {io.name: values.get(io.name) for io in self.ios if not io.is_output}
        params.update({k: v for k, v in values.items() if k not in params and k not in outputs})
        return RunSpec(
            index=index,
            uuid=run_uuid,
            params=params,
            argv=argv,
            env=env,
            working_dir=working_dir,
            init=init,
            **_hashes(self._component_json, params),
        )

    def _render_init(self, entry: m.Init, context: dict[str, Any], index: int) -> m.Init:
        """Render every string of an init entry (url, revision, file content, path...); all
        but a file's content reach a command line or a path, so none may hold a NUL byte."""
        content = f"run.init[{index}].file.content"

        def walk(value: Any, where: str) -> Any:
            if isinstance(value, str):
                text = self.renderer.render(value, context, field=where)
                return text if where == content else no_nul(text, where)
            if isinstance(value, dict):
                return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return value

        data = walk(msgspec.to_builtins(entry), f"run.init[{index}]")
        return msgspec.convert(data, m.Init)

    def check_entry(self, index: int, entry: Mapping[str, Any]) -> None:
        """A mapping entry must cover the required inputs, fit their types and render."""
        missing = [
            io.name
            for io in self.ios
            if io.required
            and not io.is_output
            and io.name not in self._given
            and io.name not in entry
        ]
        if missing:
            raise SpecError(
                f"input {missing[0]!r} is required, no param was passed",
                field=f"matrix.values[{index}]",
            )
        values = self.values_for(index, entry)  # type errors first, named by entry and key
        shapes = self._entry_shapes
        if shapes.renders_alike(values):
            return  # an entry of the same keys and value types rendered without error
        self.render(index, entry, _CHECK_UUID, values)  # any uuid renders alike
        shapes.rendered(values)

    @cached_property
    def _entry_shapes(self) -> EntryShapes:
        """The shapes of the mapping entries rendered so far (``entry_shapes.py``)."""
        glob = self._globals(10**15, _CHECK_UUID, with_paths=self._run_uses_globals)
        fixed = len(str(glob)) + 4096
        return EntryShapes(self.renderer, self._run_templates(), fixed)

    def _run_templates(self) -> list[str] | None:
        """Every string a run renders (command, args, env values, workingDir, argFormats);
        None when ``init`` holds a template (its render is converted back into a model)."""
        run = self.spec.component.run
        assert isinstance(run, m.Job | m.Service)
        if run.init:
            text = msgspec.json.encode(run.init).decode()
            if "{{" in text or "{%" in text:
                return None
        container = run.container or m.Container()
        templates: list[str] = []
        for items in (container.command, container.args):
            if isinstance(items, str):
                templates.append(items)
            elif items:
                templates.extend(item for item in items if isinstance(item, str))
        templates.extend(v.value for v in container.env or [] if isinstance(v.value, str))
        if container.working_dir:
            templates.append(container.working_dir)
        templates.extend(io.io.arg_format for io in self.ios if io.io.arg_format)
        return templates

    def config_hash(self, params: Mapping[str, Any]) -> str:
        """SHA-256 of the component and the typed params, stable under key order."""
        digest = hashlib.sha256(self._component_json)
        digest.update(msgspec.json.encode(dict(params), order="sorted"))
        return digest.hexdigest()

    @property
    def component_hash(self) -> str:
        """SHA-256 of the component: command, inputs, outputs, init..."""
        return hashlib.sha256(self._component_json).hexdigest()

    @cached_property
    def _run_uses_globals(self) -> bool:
        """Whether any string of the component's ``run`` (command, args, env, init...) names
        ``globals``: its paths are built for each run only then (they cost more than the
        rest of a run's render)."""
        return "globals" in msgspec.json.encode(self.spec.component.run).decode()

    def _uses_globals(self, values: Mapping[str, Any]) -> bool:
        """Whether a render of a run with ``values`` may read ``globals`` (a value written
        as a template, or the ``run`` section, names it)."""
        return self._run_uses_globals or any(
            is_template(v) and "globals" in v for v in values.values()
        )

    def _globals(self, index: int, run_uuid: str, *, with_paths: bool = True) -> dict[str, Any]:
        """``globals.*`` of one run (``with_paths``: with its local paths too)."""
        name = self.name or self.spec.operation.name or self.spec.component.name
        return {
            "uuid": run_uuid,
            "name": name,
            "iteration": index,
            "owner_name": "local",
            "project_name": "local",
            "project_unique_name": "local.local",
            "project_uuid": None,
            "username": None,
            "user_email": None,
            "namespace": None,
            "created_at": None,
            "compiled_at": None,
            "schedule_at": None,
            "started_at": None,
            "finished_at": None,
            "duration": None,
            "cloning_kind": None,
            "original_uuid": None,
            "is_independent": False,
            **(self.paths(run_uuid) if with_paths else {}),
        }

    def _context(self, values: dict[str, Any], glob: dict[str, Any]) -> dict[str, Any]:
        """Polyaxon's template context: display values on top, ``params.X``, ``globals``."""
        top: dict[str, Any] = {}
        params: dict[str, Any] = {}
        as_args: list[str] = []
        known = self._by_name
        names = [io.name for io in self.ios] + [k for k in values if k not in known]
        for name in names:
            io = known.get(name)
            value = values.get(name)
            is_flag = bool(io and io.io.is_flag)
            type_name = io.io.type if io else None
            if io is not None and io.type.base.name == "str" and not io.type.is_list:
                value = to_string(value)
            arg_format = io.io.arg_format if io else None
            connection = io.io.connection if io else None
            view = ParamView(name, value, type_name, is_flag, arg_format, connection, self.renderer)
            top[name] = (f"--{name}" if value else "") if is_flag else value
            shown = as_str(view)
            # as_arg(view), without converting the value to text a second time
            rendered_arg = (
                as_arg(view)
                if arg_format or is_flag
                else ("" if value is None else f"--{name}={shown}")
            )
            params[name] = {
                "connection": connection,
                "value": value,
                "type": type_name,
                "as_str": shown,
                "as_arg": rendered_arg,
            }
            if rendered_arg:
                as_args.append(rendered_arg)
        params["as_args"] = as_args
        return {**top, "params": params, "globals": glob}


def _hashes(component_json: bytes, params: Mapping[str, Any]) -> dict[str, str]:
    """``config_hash`` and ``params_hash`` of a run, encoding the params once."""
    encoded = msgspec.json.encode(dict(params), order="sorted")
    return {
        "config_hash": hashlib.sha256(component_json + encoded).hexdigest(),
        "params_hash": hashlib.sha256(encoded).hexdigest(),
    }


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 of typed params, stable under key order."""
    return hashlib.sha256(msgspec.json.encode(dict(params), order="sorted")).hexdigest()


def _env_text(value: Any) -> str:
    """Env values as Polyaxon's Kubernetes converter writes them: the rendered text is read as
    a Python literal where it is one, and anything that is not a string becomes compact JSON
    (``True`` -> ``true``, ``[1, 2]`` -> ``[1,2]``)."""
    if isinstance(value, str):
        value = _plain(value)
    if isinstance(value, str):
        return value
    text = to_string(value)
    return "" if text is None else text


def _parsed_for(value: Any, io: ResolvedIO) -> Any:
    """Matrix values pass through ``parse_expression`` unless the input is text (2.18)."""
    return value if io.type.base.name == "str" else _plain(value)


def _plain(value: Any) -> Any:
    """Polyaxon passes pass-through values through ``parse_expression``: ``"5"`` becomes 5."""
    if isinstance(value, str) and not is_template(value):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    return value


def compile_plan(
    spec: LoadedSpec,
    overrides: Mapping[str, str] | None = None,
    *,
    paths: RunPaths | None = None,
    name: str | None = None,
    open_mapping: bool = False,
    seed: int | None = None,
) -> Plan:
    """Check the spec with its ``-P NAME=VALUE`` overrides and return the lazy plan.

    ``seed``: for a random search whose file gives none, the seed to draw with (a resumed
    sweep passes the one it first drew); otherwise a new one is drawn and ``plan.expansion
    .seed`` says which.

    ``paths`` gives each run's folders for ``globals.*`` (``orchestrator.store.layout
    .run_paths(home)``); without it those names are undefined in templates.

    With ``open_mapping``, the mapping may grow later (the daemon's open sweeps): inputs it
    does not cover yet are checked per added entry (:meth:`Plan.check_entry`)."""
    try:
        return _compile(spec, dict(overrides or {}), paths or _no_paths, name, open_mapping, seed)
    except SpecError as exc:
        raise exc.with_file(spec.source) from None


def _compile(
    spec: LoadedSpec,
    overrides: dict[str, str],
    paths: RunPaths,
    name: str | None,
    open_mapping: bool = False,
    seed: int | None = None,
) -> Plan:
    op, component = spec.operation, spec.component
    run = component.run
    if not isinstance(run, m.Job | m.Service):
        raise SpecError(
            "a DAG (run.kind: dag) is compiled with orchestrator.spec.dag.compile_dag, "
            "not compile_plan"
            if isinstance(run, m.Dag)
            else "only job and service runs can run locally",
            field="run.kind",
            file=spec.component_source,
        )
    if run.container is None:
        raise SpecError(
            "required to run locally (command and args)",
            field="run.container",
            file=spec.component_source,
        )
    try:
        ios = resolve_ios(component)
        request = request_from_resources(run.container.resources)
    except SpecError as exc:
        raise exc.with_file(spec.component_source) from None
    by_name = {io.name: io for io in ios}

    base: dict[str, Any] = {io.name: io.default for io in ios if io.has_default}
    context_values: dict[str, Any] = {}
    given: set[str] = set()
    params = dict(op.params or {})
    for key, raw in overrides.items():
        params[key] = m.Param(value=raw)
    for key, param in params.items():
        where = f"-P {key}" if key in overrides else f"params.{key}"
        value = _param_value(param, where)
        io = by_name.get(key)
        if io is None:
            if param.context_only:
                context_values[key] = value
                continue
            hint = "" if key in overrides else " (set contextOnly: true to pass it through)"
            raise SpecError(f"no input or output named {key!r}{hint}", field=where)
        given.add(key)
        base[key] = (
            value
            if is_template(value)
            else typed_value(value, io, where if key in overrides else f"{where}.value")
        )

    expansion: Expansion | None = None
    if op.matrix is not None:
        if isinstance(op.matrix, m.Mapping) and not op.matrix.values and not open_mapping:
            raise SpecError("the mapping has no entries", field="matrix.values")
        expansion = expand_matrix(op.matrix, seed=seed)
        _check_matrix(op.matrix, expansion, by_name)

    for io in ios:
        if io.is_output or not io.required or io.name in given:
            continue
        if expansion is not None and _matrix_covers(op.matrix, io.name):
            continue
        if open_mapping and isinstance(op.matrix, m.Mapping):
            continue
        raise SpecError(f"input {io.name!r} is required, no param was passed", field="params")

    lenient = set(expansion.keys) if expansion is not None else set()
    plan = Plan(spec, ios, base, context_values, expansion, paths, Renderer(lenient), name)
    plan._component_json = msgspec.json.encode(component, order="sorted")
    plan._given = given
    plan.warnings = _shadowed_overrides(op.matrix, overrides)
    plan.request = request
    plan.warnings += [
        f"run.container.resources: {key!r} has no local meaning, ignored" for key in request.ignored
    ]
    if isinstance(op.matrix, m.Mapping):
        # Type-check every mapping entry before anything runs (Polyaxon only checks the first).
        for index, entry in enumerate(op.matrix.values):
            plan.check_entry(index, entry)
    elif expansion is None or expansion.adaptive or len(expansion):
        # Render the first run now, so template errors surface before anything runs.
        next(iter(plan.runs()))
    return plan


def _matrix_covers(matrix: m.Matrix | None, name: str) -> bool:
    if isinstance(matrix, m.Mapping):
        # Each entry is checked on its own later, with its index in the message.
        return any(name in entry for entry in matrix.values)
    params = getattr(matrix, "params", None) or {}
    resource = getattr(matrix, "resource", None)
    return name in params or (resource is not None and resource.name == name)


def _shadowed_overrides(matrix: m.Matrix | None, overrides: Mapping[str, str]) -> list[str]:
    """One warning per ``-P`` value the matrix overrides: as in Polyaxon, the matrix wins over
    params, so the value is ignored where the matrix sets the same name."""
    warnings = []
    for key, value in overrides.items():
        setting, total = _runs_setting(matrix, key)
        if not setting:
            continue
        if setting == total:
            warnings.append(f"-P {key}={value} is ignored: the matrix sets {key!r} for every run")
        else:
            warnings.append(
                f"-P {key}={value} is ignored in {setting} of {total} runs: "
                f"their mapping entries set {key!r}"
            )
    return warnings


def _runs_setting(matrix: m.Matrix | None, name: str) -> tuple[int, int]:
    """In how many of how many configurations the matrix sets ``name`` (a mapping's entries
    each choose; any other matrix sets its params in every one)."""
    if isinstance(matrix, m.Mapping):
        return sum(name in entry for entry in matrix.values), len(matrix.values)
    return (1 if _matrix_covers(matrix, name) else 0), 1


def _check_matrix(matrix: m.Matrix, expansion: Expansion, by_name: dict[str, ResolvedIO]) -> None:
    """Hyperparameter kinds must suit their input's type; grid values must coerce."""
    params = getattr(matrix, "params", None) or {}
    for key, hp in params.items():
        io = by_name.get(key)
        kind = hp.__struct_config__.tag
        where = f"matrix.params.{key}"
        if io is None:
            continue
        if kind in NUMERIC_KINDS and io.type.name not in {"int", "float"}:
            raise SpecError(
                f"{kind} needs an int or float input; {key!r} is {io.type}", field=f"{where}.kind"
            )
        if kind in DATE_KINDS and io.type.name != DATE_KINDS[str(kind)]:
            raise SpecError(
                f"{kind} needs a {DATE_KINDS[str(kind)]} input; {key!r} is {io.type}",
                field=f"{where}.kind",
            )
        dim = expansion.dimensions.get(key)
        if _always_float(kind, io):
            continue  # a float input takes every float these kinds generate: no need to walk
        for value in getattr(dim, "values", ()):
            typed_value(value, io, where)


def _always_float(kind: Any, io: ResolvedIO) -> bool:
    """Whether every value of a ``kind`` dimension is a float ``io`` accepts as it is (range,
    linspace, logspace and geomspace generate floats; a float input without rules takes any)."""
    return (
        kind in _FLOAT_KINDS
        and io.type.name == "float"
        and io.io.validation is None
        and io.io.options is None
    )


#: Hyperparameter kinds whose values are always floats (their bounds are read as floats).
_FLOAT_KINDS = frozenset({"range", "linspace", "logspace", "geomspace"})
