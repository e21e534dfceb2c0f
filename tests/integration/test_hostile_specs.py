"""No spec can hurt the machine: hostile polyaxonfiles, each run through the real command line.

Every case runs ``python -m orchestrator plan SPEC`` (or ``run``) in a subprocess limited to
1 GiB of address space and 20 s of CPU (``resource.setrlimit``), and must end with exit code 2
and exactly one line on stderr naming the file and the field, within a few seconds and a
bounded peak RSS: a hang, a traceback, a MemoryError or a kill by the limits fails the case.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.exceptions import ComponentRefError
from orchestrator.spec import load as load_module
from orchestrator.spec.load import URL_TIMEOUT_S, fetch_url
from orchestrator.spec.yamlsafe import MAX_FILE_BYTES

pytestmark = pytest.mark.hostile

#: What the child may use: address space, CPU seconds (the hard limit); the CPU time each
#: case may take to be refused (the bound that matters: measured by the kernel, not slowed by
#: a loaded machine), and the wall time, generous for the same reason.
ADDRESS_SPACE = 1 << 30
CPU_SECONDS = 20
CPU_BUDGET_S = 5.0
WALL_SECONDS = 30.0
#: Resident memory a refused spec may reach (the interpreter alone takes about 25 MB).
PEAK_RSS_MB = 200


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float


#: Sets the limits, runs ``python -m orchestrator ARGS`` as its child and writes the child's
#: peak RSS (KiB, from ``wait4``) to the file named first. The child is forked from this small
#: process, not from pytest: a child's peak RSS starts at its forking parent's.
LIMITED = f"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
resource.setrlimit(resource.RLIMIT_CPU, ({CPU_SECONDS}, {CPU_SECONDS}))
report, args = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "orchestrator", *args])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{{usage.ru_maxrss}} {{usage.ru_utime + usage.ru_stime}}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_limited(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Outcome:
    """Run the CLI under the limits, in its own session (killed whole on a timeout)."""
    report = cwd / "peak-rss"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", LIMITED, str(report), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    seconds = time.monotonic() - started
    rss, cpu = report.read_text().split() if report.exists() else ("nan", "nan")
    return Outcome(
        proc.returncode,
        out.decode(),
        err.decode(errors="replace"),
        seconds,
        float(rss) / 1024,
        float(cpu),
    )


# ------------------------------------------------------------------ a server that trickles


class Trickle(http.server.BaseHTTPRequestHandler):
    """Promises a big body and sends one byte a second (``/body``), or sends its headers one
    byte a second (``/headers``)."""

    def do_GET(self) -> None:
        try:
            if self.path == "/headers":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 60:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
                return
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(60):
                self.wfile.write(b"#")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            return  # the client gave up, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def trickle() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------ the hostile specs

COMMAND = (
    "version: 1.1\nkind: component\nrun:\n  kind: job\n  container:\n    command: [echo, {}]\n"
)


def _template(expression: str) -> str:
    return COMMAND.format('"{{ ' + expression.replace('"', '\\"') + ' }}"')


def _alias_bomb() -> str:
    text = 'version: 1.1\nkind: component\na: &a ["lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijk":
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def _flat_list() -> str:
    head = "version: 1.1\nkind: component\nx: ["
    count = (MAX_FILE_BYTES - len(head) - 3) // 2
    return head + ",".join(["1"] * count) + "]\n"


@dataclass(frozen=True)
class Case:
    #: The spec's text (SPEC is written to spec.yaml), or None when ``setup`` makes it.
    text: str | None
    #: Strings the one stderr line must hold (besides the spec's name).
    expect: tuple[str, ...]
    command: str = "plan"
    wall: float = WALL_SECONDS


CASES: dict[str, Case] = {
    "pathref-dev-zero": Case(
        "version: 1.1\nkind: operation\npathRef: /dev/zero\n",
        ("/dev/zero: pathRef target is a character device",),
    ),
    "pathref-fifo": Case(
        "version: 1.1\nkind: operation\npathRef: pipe.yaml\n",
        ("pipe.yaml: pathRef target is a FIFO",),
    ),
    "spec-is-dev-zero": Case(None, ("/dev/zero: file is a character device",)),
    "urlref-trickling-body": Case(
        None, ("spec.yaml: urlRef: timed out after", "/body"), wall=URL_TIMEOUT_S + 5
    ),
    "flat-list-4mb": Case(
        _flat_list(), ("spec.yaml: YAML document expands to more than 1,000,000 nodes",)
    ),
    "alias-bomb": Case(
        _alias_bomb(), ("spec.yaml: YAML document expands to more than 1,000,000 nodes",)
    ),
    "center-1e9": Case(
        _template("'a'|center(10**9)"), ("spec.yaml: run.container.command[1]: template error",)
    ),
    "percent-width-1e9": Case(
        _template("'%1000000000d' % 1"), ("spec.yaml: run.container.command[1]: template error",)
    ),
    "format-width-1e9": Case(
        _template("'{:>1000000000}'.format(1)"),
        ("spec.yaml: run.container.command[1]: template error",),
    ),
    "list-of-megabyte-strings": Case(
        _template("['a'*10**6]*1000"), ("spec.yaml: run.container.command[1]: template error",)
    ),
    "join-of-megabyte-strings": Case(
        _template("(['a'*10**6]*1000)|join"),
        ("spec.yaml: run.container.command[1]: template error",),
    ),
    "indent-1e9": Case(
        _template("'a'|indent(10**9)"), ("spec.yaml: run.container.command[1]: template error",)
    ),
    "huge-power": Case(
        _template("(10**10000)**10000"), ("spec.yaml: run.container.command[1]: template error",)
    ),
    "nested-range-loops": Case(
        COMMAND.format(
            '"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"'
        ),
        ("spec.yaml: run.container.command[1]: template error", "steps"),
    ),
    "doubling-concat": Case(
        COMMAND.format(
            "\"{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
            '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"'
        ),
        ("spec.yaml: run.container.command[1]: template error",),
    ),
    "exponential-macro": Case(
        COMMAND.format(
            '"{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}'
            '{{ f(60) }}"'
        ),
        ("spec.yaml: run.container.command[1]: template error",),
    ),
    "nul-in-argv": Case(
        COMMAND.format('"a\\0b"'), ("spec.yaml: run.container.command[1]", "NUL byte")
    ),
    "nul-in-argv-run": Case(
        COMMAND.format('"a\\0b"'),
        ("spec.yaml: run.container.command[1]", "NUL byte"),
        command="run",
    ),
    "nul-in-env-value": Case(
        COMMAND.format("x") + '    env: [{name: X, value: "a\\0b"}]\n',
        ("spec.yaml: run.container.env[0].value", "NUL byte"),
    ),
    "nul-in-env-name": Case(
        COMMAND.format("x") + '    env: [{name: "X\\0Y", value: b}]\n',
        ("spec.yaml: run.container.env[0].name", "NUL byte"),
    ),
    "nul-in-working-dir": Case(
        COMMAND.format("x") + '    workingDir: "/tmp/a\\0b"\n',
        ("spec.yaml: run.container.workingDir", "NUL byte"),
    ),
    "nul-in-init-path": Case(
        COMMAND.format("x") + '  init: [{file: {content: ok, filename: "a\\0b"}}]\n',
        ("spec.yaml: run.init[0].file.filename", "NUL byte"),
    ),
    "nul-in-mapping-value": Case(
        "version: 1.1\nkind: operation\nmatrix:\n  kind: mapping\n"
        '  values: [{name: ok}, {name: "x\\0y"}]\n'
        "component:\n  inputs: [{name: name, type: str}]\n"
        '  run: {kind: job, container: {command: [echo, "{{ name }}"]}}\n',
        ("spec.yaml: run.container.command[1]", "NUL byte"),
    ),
    "hubref-escaping-the-hub": Case(
        "version: 1.1\nkind: operation\nhubRef: ../../secret\n",
        ("spec.yaml: hubRef: expected a component name",),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_spec_is_refused_in_one_line(name: str, tmp_path: Path, trickle: str) -> None:
    case = CASES[name]
    spec = tmp_path / "spec.yaml"
    if case.text is not None:
        spec.write_text(case.text)
    target = str(spec)
    if name == "pathref-fifo":
        os.mkfifo(tmp_path / "pipe.yaml")
    elif name == "spec-is-dev-zero":
        target = "/dev/zero"
    elif name == "urlref-trickling-body":
        spec.write_text(f"version: 1.1\nkind: operation\nurlRef: {trickle}/body\n")
    hub = tmp_path / "hub" / "inner"
    hub.mkdir(parents=True)
    (tmp_path / "secret.yaml").write_text(COMMAND.format("leaked"))
    env = {**os.environ, "ORCHESTRATOR_HUB": str(hub), "ORCHESTRATOR_HOME": str(tmp_path / "h")}
    args = [case.command, target, "--home", str(tmp_path / "h")]

    got = run_limited(args, tmp_path, env, timeout=case.wall + 30)

    print(
        f"{name}: exit {got.code}, {got.seconds:.2f}s ({got.cpu_seconds:.2f}s CPU), "
        f"peak RSS {got.peak_rss_mb:.0f} MB"
    )
    lines = got.err.splitlines()
    assert got.code == 2, got.err[-2000:]
    assert len(lines) == 1, got.err[-2000:]
    for expected in case.expect:
        assert expected in lines[0]
    assert got.cpu_seconds < CPU_BUDGET_S, f"took {got.cpu_seconds:.1f} s of CPU"
    assert got.seconds < case.wall, f"took {got.seconds:.1f}s"
    assert got.peak_rss_mb < PEAK_RSS_MB


# ------------------------------------------------------------------ urlRef deadline, in-process


@pytest.mark.parametrize("path", ["/headers", "/body"])
def test_url_deadline_covers_slow_headers_and_bodies(
    path: str, trickle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline is for the whole fetch, wherever the server stalls (shortened here)."""
    monkeypatch.setattr(load_module, "URL_TIMEOUT_S", 1.5)
    started = time.monotonic()
    with pytest.raises(ComponentRefError, match=r"timed out after 1\.5s"):
        fetch_url(f"{trickle}{path}", "spec.yaml")
    assert time.monotonic() - started < 4


def test_url_deadline_cuts_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and never answers is cut at the deadline too."""
    monkeypatch.setattr(load_module, "URL_TIMEOUT_S", 1.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ComponentRefError, match="timed out"):
            fetch_url(f"http://127.0.0.1:{port}/x", "spec.yaml")
    assert time.monotonic() - started < 3


def test_the_hub_cannot_be_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.spec import load_spec

    hub = tmp_path / "hub"
    (hub / "owner").mkdir(parents=True)
    (hub / "owner" / "trainer.yaml").write_text(COMMAND.format("ok"))
    (tmp_path / "secret.yaml").write_text(COMMAND.format("leaked"))
    monkeypatch.setenv("ORCHESTRATOR_HUB", str(hub))
    spec = tmp_path / "op.yaml"
    for ref in ("../secret", "owner/../../secret", "/etc/passwd", "a:../../b", "x/y/z", ""):
        spec.write_text(f"version: 1.1\nkind: operation\nhubRef: '{ref}'\n")
        with pytest.raises(ComponentRefError, match="hubRef: expected a component name"):
            load_spec(spec)
    spec.write_text("version: 1.1\nkind: operation\nhubRef: owner/trainer\n")
    assert load_spec(spec).component.run is not None


def test_a_trickling_submission_never_stalls_the_daemon(
    tmp_path: Path, trickle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon loads a submission in a worker thread: while a urlRef trickles in, /health
    answers at once, and the submission ends in a 400 naming the deadline."""
    import io

    import anyio
    import httpx

    from orchestrator.daemon.app import build_app
    from orchestrator.daemon.hub import Hub
    from orchestrator.daemon.manager import SweepManager
    from orchestrator.engine.plugin_host import PluginHost
    from orchestrator.store.journal import Journal

    monkeypatch.setattr(load_module, "URL_TIMEOUT_S", 3.0)
    home = tmp_path / "home"
    journal = Journal(home / "journal.sqlite")
    manager = SweepManager(
        home,
        journal,
        max_runs=1,
        grace=1,
        publish=lambda event: None,
        plugins=PluginHost.installed(io.StringIO()),
    )
    app = build_app(manager, Hub(), home, None)
    health_seconds: list[float] = []

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
                submitted: list[httpx.Response] = []

                async def submit() -> None:
                    spec = f"version: 1.1\nkind: operation\nurlRef: {trickle}/body\n"
                    submitted.append(await client.post("/api/v1/sweeps", json={"spec": spec}))

                async with anyio.create_task_group() as inner:
                    inner.start_soon(submit)
                    for _ in range(4):
                        await anyio.sleep(0.5)
                        started = time.monotonic()
                        assert (await client.get("/api/v1/health")).status_code == 200
                        health_seconds.append(time.monotonic() - started)
                (response,) = submitted
                assert response.status_code == 400, response.text
                assert "urlRef: timed out after 3s" in response.json()["error"]
            await manager.shutdown(1)
            tg.cancel_scope.cancel()

    try:
        anyio.run(scenario)
    finally:
        journal.close()
    assert max(health_seconds) < 0.5, health_seconds
