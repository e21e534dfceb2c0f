"""The polyaxonfile (v1.1) as msgspec Structs: every section, strict, camelCase on the wire.

Field names are snake_case in Python and camelCase in YAML; ``decode.py`` also accepts the
snake_case spelling, as Polyaxon does. Unknown keys are rejected (``forbid_unknown_fields``).
Sections that have no local meaning (schedule, joins, plugins, ...) are still modelled so that
they are validated; ``load.py`` lists the ones a spec sets in ``LoadedSpec.ignored``, so that
they are reported once as ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from msgspec import UNSET

__all__ = [
    "IO",
    "Build",
    "Cache",
    "Component",
    "Container",
    "EnvVar",
    "Environment",
    "EventTrigger",
    "FailureEarlyStopping",
    "FileInit",
    "GitInit",
    "Hook",
    "HpParam",
    "Init",
    "Job",
    "Join",
    "Matrix",
    "MetricEarlyStopping",
    "Operation",
    "Param",
    "Plugins",
    "Resources",
    "Service",
    "Template",
    "Termination",
    "Validation",
]

_OPTS: dict[str, Any] = {
    "rename": "camel",
    "forbid_unknown_fields": True,
    "omit_defaults": True,
    "kw_only": True,
}


class Spec(msgspec.Struct, **_OPTS):
    """Base of every section."""


# --------------------------------------------------------------------------- helpers sections
class Cache(Spec):
    disable: bool | None = None
    ttl: int | None = None
    io: list[str] | None = None
    sections: list[Literal["init", "connections", "containers"]] | None = None


class Termination(Spec):
    max_retries: int | None = None
    ttl: int | None = None
    timeout: int | None = None
    culling: Any = None
    probe: Any = None
    pod_failure_policy: Any = None


class Notification(Spec):
    connections: list[str]
    trigger: str | None = None


class Plugins(Spec):
    auth: bool | None = None
    docker: bool | None = None
    shm: bool | None = None
    tmux: bool | None = None
    sandbox: bool | None = None
    ssh: bool | None = None
    mount_artifacts_store: bool | None = None
    collect_artifacts: bool | None = None
    collect_logs: bool | None = None
    collect_resources: bool | None = None
    sync_statuses: bool | None = None
    auto_resume: bool | None = None
    log_level: str | None = None
    external_host: bool | None = None
    sidecar: Any = None
    notifications: list[Notification] | None = None


class Param(Spec):
    #: ``params: {lr: 0.1}`` is short for ``params: {lr: {value: 0.1}}`` (Polyaxon >= 2.13).
    __short_form__: ClassVar[str] = "value"

    value: Any = UNSET
    ref: str | None = None
    context_only: bool | None = None
    connection: str | None = None
    to_init: bool | None = None
    to_env: str | None = None


class Build(Spec):
    hub_ref: str
    connection: str | None = None
    presets: list[str] | None = None
    queue: str | None = None
    namespace: str | None = None
    cache: Cache | None = None
    params: dict[str, Param] | None = None
    run_patch: dict[str, Any] | None = None
    patch_strategy: Literal["replace", "isnull", "post_merge", "pre_merge"] | None = None


Status = Literal[
    "created",
    "resuming",
    "on_schedule",
    "compiled",
    "queued",
    "scheduled",
    "starting",
    "running",
    "processing",
    "stopping",
    "failed",
    "stopped",
    "succeeded",
    "skipped",
    "warning",
    "unschedulable",
    "upstream_failed",
    "retrying",
    "unknown",
    "done",
]


class Hook(Spec):
    hub_ref: str
    connection: str | None = None
    trigger: Status | None = None
    conditions: str | None = None
    presets: list[str] | None = None
    queue: str | None = None
    namespace: str | None = None
    params: dict[str, Param] | None = None
    disable_defaults: bool | None = None


class Mount(Spec):
    name: str | None = None
    path: str | None = None
    kind: str | None = None
    connection: str | None = None


class Template(Spec):
    enabled: bool | None = None
    description: str | None = None
    fields: list[str] | None = None


# --------------------------------------------------------------------------- scheduling / DAG
class CronSchedule(Spec, tag_field="kind", tag="cron", kw_only=True):
    cron: str
    start_at: Any = None
    end_at: Any = None
    max_runs: int | None = None
    depends_on_past: bool | None = None


class IntervalSchedule(Spec, tag_field="kind", tag="interval", kw_only=True):
    frequency: Any
    start_at: Any = None
    end_at: Any = None
    max_runs: int | None = None
    depends_on_past: bool | None = None


class DateTimeSchedule(Spec, tag_field="kind", tag="datetime", kw_only=True):
    start_at: Any


class EventTrigger(Spec):
    kinds: list[str]
    ref: str


class Join(Spec):
    query: str
    ref: str | None = None
    sort: str | None = None
    limit: int | None = None
    offset: int | None = None
    params: dict[str, Param] | None = None


Trigger = Literal[
    "all_succeeded", "all_failed", "all_done", "one_succeeded", "one_failed", "one_done"
]


# --------------------------------------------------------------------------- IO
class Validation(Spec):
    delay: bool | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    multiple_of: float | None = None
    min_digits: int | None = None
    max_digits: int | None = None
    decimal_places: int | None = None
    regex: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    contains: Any = None
    excludes: Any = None
    options: list[Any] | None = None
    min_items: int | None = None
    max_items: int | None = None
    keys: list[str] | None = None
    contains_keys: list[str] | None = None
    excludes_keys: list[str] | None = None


class IO(Spec):
    name: str
    description: str | None = None
    type: str | None = None
    is_optional: bool | None = None
    is_list: bool | None = None
    is_flag: bool | None = None
    arg_format: str | None = None
    connection: str | None = None
    to_init: bool | None = None
    to_env: str | None = None
    #: UNSET when absent: giving a value, even ``null``, makes the IO optional.
    value: Any = UNSET
    validation: Validation | None = None
    delay_validation: bool | None = None
    options: list[Any] | None = None


# --------------------------------------------------------------------------- container and run
class EnvVar(Spec):
    name: str
    value: Any = None
    value_from: Any = None


class Resources(Spec):
    limits: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None
    claims: list[Any] | None = None


class Container(Spec):
    """Kubernetes' V1Container; only the fields marked * have a local meaning."""

    name: str | None = None
    image: str | None = None
    command: list[Any] | str | None = None  # *
    args: list[Any] | str | None = None  # *
    working_dir: str | None = None  # *
    env: list[EnvVar] | None = None  # *
    env_from: list[Any] | None = None
    resources: Resources | None = None  # * (admission weights, GPUs)
    ports: list[Any] | None = None
    volume_mounts: list[Any] | None = None
    volume_devices: list[Any] | None = None
    image_pull_policy: str | None = None
    lifecycle: Any = None
    liveness_probe: Any = None
    readiness_probe: Any = None
    startup_probe: Any = None
    resize_policy: Any = None
    restart_policy: str | None = None
    security_context: Any = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None


class GitInit(Spec):
    url: str | None = None
    revision: str | None = None
    flags: list[str] | None = None
    kind: str | None = None


class FileInit(Spec):
    content: str
    filename: str | None = None
    chmod: str | None = None
    kind: str | None = None


class Init(Spec):
    artifacts: Any = None
    paths: list[Any] | None = None
    git: GitInit | None = None
    dockerfile: Any = None
    file: FileInit | None = None
    tensorboard: Any = None
    lineage_ref: str | None = None
    model_ref: str | None = None
    artifact_ref: str | None = None
    connection: str | None = None
    path: str | None = None
    container: Container | None = None


class Environment(Spec):
    labels: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    node_selector: dict[str, Any] | None = None
    affinity: Any = None
    tolerations: list[Any] | None = None
    node_name: str | None = None
    service_account_name: str | None = None
    host_aliases: list[Any] | None = None
    security_context: Any = None
    image_pull_secrets: list[str] | None = None
    host_network: bool | None = None
    host_pid: bool | None = None
    dns_policy: str | None = None
    dns_config: Any = None
    scheduler_name: str | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    restart_policy: Literal["Always", "OnFailure", "Never", "ExitCode"] | None = None


class _RunBase(Spec):
    environment: Environment | None = None
    connections: list[str] | None = None
    volumes: list[Any] | None = None
    init: list[Init] | None = None
    sidecars: list[Container] | None = None
    container: Container | None = None


class Job(_RunBase, tag_field="kind", tag="job", kw_only=True):
    """A single container: what the orchestrator runs as one subprocess."""


class Service(_RunBase, tag_field="kind", tag="service", kw_only=True):
    """A long-running container; runs locally like a job."""

    ports: list[int] | None = None
    rewrite_path: bool | None = None
    is_external: bool | None = None
    replicas: int | None = None


class Dag(Spec, tag_field="kind", tag="dag", kw_only=True):
    """Validated so the message can be precise; not runnable locally yet."""

    operations: list[Any] | None = None
    components: list[Any] | None = None
    environment: Environment | None = None
    connections: list[str] | None = None
    volumes: list[Any] | None = None
    concurrency: int | None = None
    early_stopping: list[Any] | None = None


Run = Job | Service | Dag


# --------------------------------------------------------------------------- early stopping
class MedianPolicy(Spec, tag_field="kind", tag="median", kw_only=True):
    evaluation_interval: int | None = None
    min_interval: int | None = None
    min_samples: int | None = None


class TruncationPolicy(Spec, tag_field="kind", tag="truncation", kw_only=True):
    percent: float
    evaluation_interval: int
    min_interval: int | None = None
    min_samples: int | None = None
    include_succeeded: bool | None = None


class DiffPolicy(Spec, tag_field="kind", tag="diff", kw_only=True):
    percent: float
    evaluation_interval: int
    min_interval: int | None = None
    min_samples: int | None = None


StoppingPolicy = MedianPolicy | TruncationPolicy | DiffPolicy


class MetricEarlyStopping(Spec, tag_field="kind", tag="metric_early_stopping", kw_only=True):
    metric: str
    value: float
    optimization: Literal["maximize", "minimize"]
    policy: StoppingPolicy | None = None


class FailureEarlyStopping(Spec, tag_field="kind", tag="failure_early_stopping", kw_only=True):
    percent: float


EarlyStopping = MetricEarlyStopping | FailureEarlyStopping


# --------------------------------------------------------------------------- hyperparameters
class _Hp(Spec):
    value: Any


class HpChoice(_Hp, tag_field="kind", tag="choice", kw_only=True): ...


class HpPChoice(_Hp, tag_field="kind", tag="pchoice", kw_only=True): ...


class HpRange(_Hp, tag_field="kind", tag="range", kw_only=True): ...


class HpLinSpace(_Hp, tag_field="kind", tag="linspace", kw_only=True): ...


class HpLogSpace(_Hp, tag_field="kind", tag="logspace", kw_only=True): ...


class HpGeomSpace(_Hp, tag_field="kind", tag="geomspace", kw_only=True): ...


class HpDateRange(_Hp, tag_field="kind", tag="daterange", kw_only=True): ...


class HpDateTimeRange(_Hp, tag_field="kind", tag="datetimerange", kw_only=True): ...


class HpUniform(_Hp, tag_field="kind", tag="uniform", kw_only=True): ...


class HpQUniform(_Hp, tag_field="kind", tag="quniform", kw_only=True): ...


class HpLogUniform(_Hp, tag_field="kind", tag="loguniform", kw_only=True): ...


class HpQLogUniform(_Hp, tag_field="kind", tag="qloguniform", kw_only=True): ...


class HpNormal(_Hp, tag_field="kind", tag="normal", kw_only=True): ...


class HpQNormal(_Hp, tag_field="kind", tag="qnormal", kw_only=True): ...


class HpLogNormal(_Hp, tag_field="kind", tag="lognormal", kw_only=True): ...


class HpQLogNormal(_Hp, tag_field="kind", tag="qlognormal", kw_only=True): ...


HpParam = (
    HpChoice
    | HpPChoice
    | HpRange
    | HpLinSpace
    | HpLogSpace
    | HpGeomSpace
    | HpDateRange
    | HpDateTimeRange
    | HpUniform
    | HpQUniform
    | HpLogUniform
    | HpQLogUniform
    | HpNormal
    | HpQNormal
    | HpLogNormal
    | HpQLogNormal
)


# --------------------------------------------------------------------------- matrix
class OptimizationMetric(Spec):
    name: str
    optimization: Literal["maximize", "minimize"] | None = None


class OptimizationResource(Spec):
    name: str
    type: Literal["int", "float"] | None = None


class Tuner(Spec):
    hub_ref: str
    presets: list[str] | None = None
    queue: str | None = None
    namespace: str | None = None
    params: dict[str, Param] | None = None


class GaussianProcess(Spec):
    kernel: Literal["matern", "rbf"] | None = None
    length_scale: float | None = None
    nu: float | None = None
    num_restarts_optimizer: int | None = None


class UtilityFunction(Spec):
    acquisition_function: Literal["ucb", "ei", "poi"] | None = None
    gaussian_process: GaussianProcess | None = None
    kappa: float | None = None
    eps: float | None = None
    num_warmup: int | None = None
    num_iterations: int | None = None


class _MatrixBase(Spec):
    concurrency: int | None = None
    early_stopping: list[EarlyStopping] | None = None


class Mapping(_MatrixBase, tag_field="kind", tag="mapping", kw_only=True):
    values: list[dict[str, Any]]


class Grid(_MatrixBase, tag_field="kind", tag="grid", kw_only=True):
    params: dict[str, HpParam]
    num_runs: int | None = None


class Random(_MatrixBase, tag_field="kind", tag="random", kw_only=True):
    params: dict[str, HpParam]
    num_runs: int
    seed: int | None = None


class Hyperband(_MatrixBase, tag_field="kind", tag="hyperband", kw_only=True):
    params: dict[str, HpParam] | None = None
    max_iterations: int | None = None
    eta: float | None = None
    resource: OptimizationResource | None = None
    metric: OptimizationMetric | None = None
    resume: bool | None = None
    seed: int | None = None
    tuner: Tuner | None = None


class Bayes(_MatrixBase, tag_field="kind", tag="bayes", kw_only=True):
    num_initial_runs: int
    max_iterations: int
    metric: OptimizationMetric
    params: dict[str, HpParam]
    utility_function: UtilityFunction | None = None
    seed: int | None = None
    tuner: Tuner | None = None


class Hyperopt(_MatrixBase, tag_field="kind", tag="hyperopt", kw_only=True):
    metric: OptimizationMetric
    params: dict[str, HpParam]
    algorithm: Literal["tpe", "rand", "anneal"] | None = None
    max_iterations: int | None = None
    num_runs: int | None = None
    seed: int | None = None
    tuner: Tuner | None = None


class Tpe(_MatrixBase, tag_field="kind", tag="tpe", kw_only=True):
    """Polyaxon 2.18's Tree-structured Parzen Estimator (2.16 files say ``hyperopt``)."""

    metric: OptimizationMetric
    params: dict[str, HpParam]
    max_iterations: int | None = None
    num_runs: int | None = None
    seed: int | None = None
    tuner: Tuner | None = None


class Iterative(_MatrixBase, tag_field="kind", tag="iterative", kw_only=True):
    max_iterations: int
    params: dict[str, HpParam] | None = None
    seed: int | None = None
    tuner: Tuner | None = None


Matrix = Mapping | Grid | Random | Hyperband | Bayes | Hyperopt | Tpe | Iterative


# --------------------------------------------------------------------------- top level
class _Base(Spec):
    #: Required at the top of a file (checked in ``load.py``), optional on inline components.
    version: float | None = None
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    presets: list[str] | None = None
    strict_params: bool | None = None
    queue: str | None = None
    namespace: str | None = None
    cache: Cache | None = None
    termination: Termination | None = None
    plugins: Plugins | None = None
    build: Build | None = None
    hooks: list[Hook] | None = None
    is_approved: bool | None = None
    cost: float | None = None
    mount: list[str | Mount] | None = None
    template: Template | None = None


class Component(_Base, tag_field="kind", tag="component", kw_only=True):
    run: Run
    inputs: list[IO] | None = None
    outputs: list[IO] | None = None


class Operation(_Base, tag_field="kind", tag="operation", kw_only=True):
    params: dict[str, Param] | None = None
    matrix: Matrix | None = None
    schedule: CronSchedule | IntervalSchedule | DateTimeSchedule | None = None
    events: list[EventTrigger] | None = None
    joins: list[Join] | None = None
    dependencies: list[str] | None = None
    trigger: Trigger | None = None
    conditions: str | None = None
    skip_on_upstream_skip: bool | None = None
    hub_ref: str | None = None
    dag_ref: str | None = None
    url_ref: str | None = None
    path_ref: str | None = None
    component: Component | None = None
    patch_strategy: Literal["replace", "isnull", "post_merge", "pre_merge"] | None = None
    is_preset: bool | None = None
    run_patch: dict[str, Any] | None = None


Polyaxonfile = Operation | Component
