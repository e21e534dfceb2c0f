"""Read a polyaxonfile and resolve its component reference (``pathRef``, ``urlRef``, ...).

The result, :class:`LoadedSpec`, is an operation whose component is known, plus the sections
that have no local meaning (reported once, never silently dropped).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.exceptions import ComponentRefError, SpecError
from orchestrator.spec import models as m
from orchestrator.spec.decode import decode, to_camel
from orchestrator.spec.yamlsafe import MAX_FILE_BYTES, load_yaml

__all__ = [
    "LoadedSpec",
    "load_spec",
    "load_text",
    "read_spec_file",
    "resolve_component",
    "with_ignored",
]

_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]+\Z")
#: A hubRef: ``name``, ``owner/name``, either with ``:tag``; nothing that can leave the hub.
_HUB_REF_RE = re.compile(r"^(?:[-a-zA-Z0-9_]+/)?[-a-zA-Z0-9_]+(?::[-a-zA-Z0-9_.]+)?\Z")
#: Seconds allowed for a whole urlRef fetch: connecting, redirects and the body together
#: (a server that trickles bytes is cut off when they run out).
URL_TIMEOUT_S = 10.0
#: Redirects a urlRef may follow.
URL_MAX_REDIRECTS = 5
_READ_CHUNK = 64 * 1024
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

_IGNORED_OPERATION = (
    "schedule",
    "events",
    "joins",
    "dependencies",
    "trigger",
    "conditions",
    "skip_on_upstream_skip",
    "queue",
    "namespace",
    "presets",
    "cost",
    "plugins",
    "build",
    "mount",
    "is_approved",
    "patch_strategy",
    "is_preset",
    "run_patch",
    "template",
)
_IGNORED_COMPONENT = (
    "queue",
    "namespace",
    "presets",
    "cost",
    "plugins",
    "build",
    "mount",
    "is_approved",
    "template",
)
_IGNORED_RUN = ("environment", "volumes", "sidecars", "connections")


@dataclass
class LoadedSpec:
    """An operation with its component resolved."""

    source: str
    operation: m.Operation
    component: m.Component
    #: Where the component came from (file path, URL or hub name), for messages.
    component_source: str
    #: Folder relative paths in the spec are resolved against.
    base_dir: Path
    ignored: list[str] = field(default_factory=list)


def _check_top(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        shown = "an empty file" if data is None else type(data).__name__
        raise SpecError(f"expected a mapping at the top level, got {shown}", file=source)
    for key in data:
        if isinstance(key, str) and to_camel(key) != key:
            # Polyaxon's reader refuses a top-level section not written as it writes it
            # (``path_ref``) before anything else; nested keys may be snake_case.
            raise SpecError(
                f"unexpected section; the top level is written in camelCase: {to_camel(key)!r}",
                field=key,
                file=source,
            )
    if "version" not in data:
        raise SpecError("required key missing; expected 1.1", field="version", file=source)
    version = data["version"]
    if isinstance(version, str):  # Polyaxon 2.16 refuses it (2.18 reads it as a number)
        raise SpecError(
            f"expected the number 1.1, got the string {version!r}", field="version", file=source
        )
    if isinstance(version, bool) or not isinstance(version, int | float) or version != 1.1:
        raise SpecError(f"expected 1.1, got {version!r}", field="version", file=source)
    if "kind" not in data:
        raise SpecError(
            "required key missing; expected operation or component", field="kind", file=source
        )


def _decode_file(data: Any, source: str) -> m.Operation | m.Component:
    _check_top(data, source)
    try:
        spec: m.Operation | m.Component = decode(data, m.Polyaxonfile)
    except SpecError as exc:
        raise exc.with_file(source) from None
    _check_names(spec, source)
    return spec


def _check_names(spec: m.Operation | m.Component, source: str) -> None:
    if spec.name is not None and not _NAME_RE.match(spec.name):
        raise SpecError(
            f"expected letters, digits, '-' or '_', got {spec.name!r}", field="name", file=source
        )
    if isinstance(spec, m.Operation) and spec.component is not None:
        if spec.component.version not in (None, 1.1):
            raise SpecError(
                f"expected 1.1, got {spec.component.version!r}",
                field="component.version",
                file=source,
            )
        _check_names(spec.component, source)


def load_text(text: str | bytes, source: str, base_dir: Path | None = None) -> LoadedSpec:
    """Load a polyaxonfile from text; ``source`` names it in errors."""
    spec = _decode_file(load_yaml(text, source), source)
    base = base_dir if base_dir is not None else Path.cwd()
    if isinstance(spec, m.Component):
        operation = m.Operation(version=spec.version, component=spec)
        return _finish(LoadedSpec(source, operation, spec, source, base))
    component, where = _resolve_reference(spec, source, base)
    return _finish(LoadedSpec(source, spec, component, where, base))


def load_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    """Load a polyaxonfile from disk."""
    file = Path(path)
    source = str(path)
    return load_text(read_spec_file(file, source, "file"), source, file.resolve().parent)


def read_spec_file(file: Path, source: str, what: str = "file") -> bytes:
    """Read at most MAX_FILE_BYTES from a regular file, counting bytes as they come.

    ``st_size`` cannot be trusted (it is 0 for ``/dev/zero`` and ``/proc`` files), and opening a
    FIFO blocks until a writer comes: the file is opened non-blocking, what was opened is
    checked with ``fstat`` (no race with a swap after a ``stat``), and anything but a regular
    file is refused."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(file, flags)
    except FileNotFoundError:
        raise SpecError(f"{what} not found", file=source) from None
    except IsADirectoryError:
        raise SpecError(f"{what} is a directory, expected a YAML file", file=source) from None
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror}", file=source) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecError(f"{what} is a directory, expected a YAML file", file=source)
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
            raise SpecError(f"{what} is {kind}, expected a regular YAML file", file=source)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(_READ_CHUNK, MAX_FILE_BYTES + 1 - total)):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise SpecError(
                    f"{what} is larger than the {MAX_FILE_BYTES:,}-byte limit", file=source
                )
            chunks.append(chunk)
        return b"".join(chunks)
    except BlockingIOError:  # a "regular" file that would block (/proc/kmsg and the like)
        raise SpecError(f"cannot read {what}: it would block", file=source) from None
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror}", file=source) from None
    finally:
        os.close(fd)


def resolve_component(
    op: m.Operation,
    source: str,
    base: Path,
    dag_components: Mapping[str, m.Component] | None = None,
) -> tuple[m.Component, str]:
    """The component an operation names and where it came from. ``dag_components``: the
    ``run.components`` of the DAG that holds ``op`` (a ``dagRef`` resolves among them; a file's
    top-level operation has none, so its ``dagRef`` is an error)."""
    return _resolve_reference(op, source, base, dag_components)


def _resolve_reference(
    op: m.Operation,
    source: str,
    base: Path,
    dag_components: Mapping[str, m.Component] | None = None,
) -> tuple[m.Component, str]:
    refs = {
        name: value
        for name, value in (
            ("hubRef", op.hub_ref),
            ("dagRef", op.dag_ref),
            ("urlRef", op.url_ref),
            ("pathRef", op.path_ref),
            ("component", op.component),
        )
        if value is not None
    }
    if op.component is not None and len(refs) == 2:
        # Polyaxon counts the inline component only when no reference is given: with one
        # (``hubRef: kaniko`` plus the component it resolved to), the component is used.
        return op.component, source
    if len(refs) != 1:
        given = ", ".join(refs) if refs else "none"
        raise ComponentRefError(
            "one and only one of hubRef, dagRef, urlRef, pathRef or component must be given "
            f"(got {given})",
            file=source,
        )
    ((kind, value),) = refs.items()
    if kind == "component":
        assert isinstance(value, m.Component)
        return value, source
    assert isinstance(value, str)
    if kind == "pathRef":
        target = (base / value).resolve()
        shown = str(target)
        text: str | bytes = read_spec_file(target, shown, "pathRef target")
        return _component_from(text, shown, "pathRef"), shown
    if kind == "urlRef":
        return _component_from(fetch_url(value, source), value, "urlRef"), value
    if kind == "hubRef":
        hub_file = _hub_file(value, source)
        return _component_from(
            read_spec_file(hub_file, str(hub_file), "hub component"), str(hub_file), "hubRef"
        ), str(hub_file)
    if dag_components is None:
        raise ComponentRefError(
            "dagRef names a component of the DAG that holds the operation (run.components); "
            "a file's top-level operation has no DAG around it: use pathRef, hubRef, urlRef "
            "or an inline component",
            field="dagRef",
            file=source,
        )
    component = dag_components.get(value)
    if component is None:
        known = ", ".join(repr(n) for n in dag_components) or "none"
        raise ComponentRefError(
            f"operation {op.name!r} requires a component with name {value!r}, which is not "
            f"defined on this pipeline (run.components: {known})",
            field="dagRef",
            file=source,
        )
    return component, source


def _component_from(text: str | bytes, where: str, ref: str) -> m.Component:
    spec = _decode_file(load_yaml(text, where), where)
    if not isinstance(spec, m.Component):
        raise ComponentRefError(
            f"{ref} must point at a component (kind: component), got an operation", file=where
        )
    return spec


def _hub_file(name: str, source: str) -> Path:
    hub = os.environ.get("ORCHESTRATOR_HUB")
    if not hub:
        raise ComponentRefError(
            f"cannot resolve {name!r}: no local hub (set ORCHESTRATOR_HUB to a folder holding "
            "NAME.yaml files)",
            field="hubRef",
            file=source,
        )
    if not _HUB_REF_RE.match(name):
        raise ComponentRefError(
            "expected a component name (letters, digits, '-' or '_'), optionally "
            f"owner/name and :tag, got {name!r}",
            field="hubRef",
            file=source,
        )
    base_name, _, tag = name.partition(":")
    candidates = [Path(hub) / base_name / f"{tag}.yaml"] if tag else []
    candidates += [Path(hub) / f"{name}.yaml", Path(hub) / f"{base_name}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ComponentRefError(
        f"component {name!r} not found in hub folder {hub}", field="hubRef", file=source
    )


class _Deadline:
    """Cuts a fetch's connections when its time is up.

    httpx's timeouts bound each socket operation, not the whole: a server that sends one byte
    a second (in the headers or the body) never trips them. The connections are learnt through
    httpcore's ``trace`` extension as they open; at the deadline a timer shuts them down, which
    wakes a read blocked in another thread."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        return max(0.001, self.at - time.monotonic())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            with self._lock:
                self._streams.append(info.get("return_value"))
                if self.expired:
                    self._cut()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            self._cut()

    def _cut(self) -> None:
        for stream in self._streams:
            sock = getattr(stream, "get_extra_info", lambda name: None)("socket")
            if isinstance(sock, socket.socket):
                # OSError: already closed, or detached by TLS (the SSL socket is cut instead).
                with contextlib.suppress(OSError):
                    # The plain socket's method: an SSLSocket's own would unwrap TLS first.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


def fetch_url(url: str, source: str, field: str = "urlRef") -> bytes:
    """GET ``url`` within URL_TIMEOUT_S in all and at most MAX_FILE_BYTES; errors name
    ``source`` and ``field``."""
    import httpx  # imported here: only urlRef needs it, and it is slow to import

    if not url.startswith(("http://", "https://")):
        raise ComponentRefError(f"expected an http(s) URL, got {url!r}", field=field, file=source)

    def timed_out() -> ComponentRefError:
        return ComponentRefError(
            f"timed out after {URL_TIMEOUT_S:g}s fetching {url}", field=field, file=source
        )

    try:
        with _Deadline(URL_TIMEOUT_S) as deadline, httpx.Client() as client:
            request = client.build_request(
                "GET",
                url,
                headers={"Accept-Encoding": "identity"},
                extensions={"trace": deadline.trace},
            )
            for _ in range(URL_MAX_REDIRECTS + 1):
                # Each hop gets what is left of the deadline for every socket operation.
                request.extensions["timeout"] = httpx.Timeout(deadline.remaining()).as_dict()
                response = client.send(request, stream=True)
                with contextlib.closing(response):
                    if response.next_request is not None:
                        request = response.next_request
                        continue
                    if response.status_code != 200:
                        raise ComponentRefError(
                            f"fetching {url} returned HTTP {response.status_code}",
                            field=field,
                            file=source,
                        )
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body.extend(chunk)
                        if len(body) > MAX_FILE_BYTES:
                            raise ComponentRefError(
                                f"{url} is larger than {MAX_FILE_BYTES:,} bytes",
                                field=field,
                                file=source,
                            )
                        if deadline.expired:
                            raise timed_out()
                    if deadline.expired:  # cut while the last chunk was read: it may be short
                        raise timed_out()
                    return bytes(body)
            raise ComponentRefError(
                f"more than {URL_MAX_REDIRECTS} redirects fetching {url}", field=field, file=source
            )
    except httpx.HTTPError as exc:
        if isinstance(exc, httpx.TimeoutException) or deadline.expired:
            raise timed_out() from None
        reason = str(exc) or type(exc).__name__
        raise ComponentRefError(
            f"cannot fetch {url} ({reason}); offline? use pathRef to a local copy",
            field=field,
            file=source,
        ) from None


def _finish(loaded: LoadedSpec) -> LoadedSpec:
    op, comp = loaded.operation, loaded.component
    ignored = [to_camel(n) for n in _IGNORED_OPERATION if getattr(op, n) is not None]
    ignored += [
        f"component.{to_camel(n)}" for n in _IGNORED_COMPONENT if getattr(comp, n) is not None
    ]
    run = comp.run
    if isinstance(run, m.Job | m.Service):
        ignored += [f"run.{n}" for n in _IGNORED_RUN if getattr(run, n) is not None]
        if run.container is not None and run.container.image is not None:
            ignored.append("run.container.image (the command runs on this machine)")
    elif isinstance(run, m.Dag):  # passed to every operation by Polyaxon; none has a meaning here
        ignored += [
            f"run.{n}" for n in ("environment", "volumes", "connections") if getattr(run, n)
        ]
    loaded.ignored = ignored
    return loaded


def with_ignored(loaded: LoadedSpec) -> LoadedSpec:
    """``loaded`` with ``ignored`` listing the sections it sets that have no local meaning
    (a DAG's node specs are built, not loaded, and report the same way)."""
    return _finish(loaded)
