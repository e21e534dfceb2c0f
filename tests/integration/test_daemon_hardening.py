"""The daemon against hostile neighbours and clients: folder and socket modes, a pre-created
socket folder, slow connections, DNS rebinding, IPv6, malformed bodies, huge logs.

Every test runs the real daemon as a subprocess and talks to it over real sockets."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.daemon.server import BODY_TIMEOUT, HEAD_TIMEOUT, MAX_CONNECTIONS
from orchestrator.diagnostics import is_ready_record
from orchestrator.store.layout import daemon_dir, daemon_info_path
from tests.integration.test_daemon import Daemon, sse

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
#: Slack on top of a server deadline: the suite shares two cores with other work.
SLACK = 4.0


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def launch(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the daemon; return once it says ``ready`` (stderr is drained after that)."""
    proc = subprocess.Popen(
        [PY, "-m", "orchestrator", "daemon", "--home", str(home), "--grace", "2", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if is_ready_record(line):
            break
    else:
        raise AssertionError(f"daemon did not start ({proc.wait()}): {''.join(seen)}")
    log = _logs.setdefault(proc.pid, [])
    stream = proc.stderr
    drain = threading.Thread(target=lambda: log.extend(stream), daemon=True)
    drain.start()
    _drains[proc.pid] = drain
    return proc


_drains: dict[int, threading.Thread] = {}
_logs: dict[int, list[str]] = {}


def daemon_log(proc: subprocess.Popen[str]) -> str:
    """What the daemon has written on stderr so far (for a failing assertion's message)."""
    return "".join(_logs.get(proc.pid, []))


def stop(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, "a SIGTERM ends the daemon cleanly"
    finally:
        drain = _drains.pop(proc.pid, None)
        if drain is not None:
            drain.join(5)
        if proc.stderr is not None:
            proc.stderr.close()


def refused(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a daemon that must not start; its one-line error."""
    result = subprocess.run(
        [PY, "-m", "orchestrator", "daemon", "--home", str(home), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    proc = launch(short_tmp / "home", "--port", "0")
    try:
        yield Daemon(short_tmp / "home", proc)
    finally:
        stop(proc)


# ----------------------------------------------------------------- folders, files, sockets


def test_a_new_home_is_private_and_an_existing_shared_one_keeps_its_mode(
    short_tmp: Path,
) -> None:
    new = short_tmp / "new" / "home"
    proc = launch(new)
    try:
        assert mode(new) == 0o700
        assert mode(daemon_dir(new)) == 0o700
        assert mode(daemon_dir(new) / "daemon.sock") == 0o600
        assert mode(daemon_info_path(new)) == 0o600
        assert mode(daemon_dir(new) / "daemon.lock") == 0o600
        assert mode(new / "journal.sqlite") == 0o600
        for wal in ("journal.sqlite-wal", "journal.sqlite-shm"):  # open while it runs
            assert mode(new / wal) == 0o600, "SQLite gives them the journal's mode"
        assert mode(new / "runs") == 0o700
    finally:
        stop(proc)

    shared = short_tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    proc = launch(shared)
    try:
        assert mode(shared) == 0o1777, "a folder the user gave keeps its mode"
        assert mode(daemon_dir(shared)) == 0o700
        assert mode(json.loads(daemon_info_path(shared).read_text())["socket"]) == 0o600
        assert mode(shared / "journal.sqlite") == 0o600
    finally:
        stop(proc)
    assert mode(shared) == 0o1777


def test_a_daemon_folder_others_can_enter_is_refused(short_tmp: Path) -> None:
    home = short_tmp / "home"
    daemon_dir(home).mkdir(parents=True)
    os.chmod(daemon_dir(home), 0o755)
    assert "mode 755 lets others in" in refused(home)
    assert mode(daemon_dir(home)) == 0o755, "refused, not changed"


def _long_home(base: Path) -> Path:
    home = base / ("h" * 60) / ("o" * 60)
    assert len(str(daemon_dir(home) / "daemon.sock")) > 107
    return home


def test_a_long_home_puts_its_socket_in_a_private_runtime_folder(short_tmp: Path) -> None:
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o700)
    home = _long_home(short_tmp)
    proc = launch(home, env={"XDG_RUNTIME_DIR": str(runtime)})
    try:
        info = json.loads(daemon_info_path(home).read_text())
        digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
        assert info["socket"] == str(runtime / "orchestrator" / f"{digest}.sock")
        assert mode(runtime / "orchestrator") == 0o700
        assert mode(info["socket"]) == 0o600
        transport = httpx.HTTPTransport(uds=info["socket"])
        with httpx.Client(transport=transport, base_url="http://d") as client:
            assert client.get("/api/v1/health").status_code == 200
    finally:
        stop(proc)


@pytest.mark.parametrize("hostile", ["world-writable", "symlink", "someone else's"])
def test_a_pre_created_hostile_socket_folder_is_refused(short_tmp: Path, hostile: str) -> None:
    runtime = short_tmp / "run"
    runtime.mkdir()
    folder = runtime / "orchestrator"
    if hostile == "world-writable":
        folder.mkdir()
        os.chmod(folder, 0o777)
        expected = "lets others in"
    elif hostile == "symlink":
        (short_tmp / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(short_tmp / "elsewhere")
        expected = "symbolic link"
    else:
        if os.getuid() != 0:
            pytest.skip("needs root to give the folder to another user")
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
        expected = "belongs to uid 65534"
    error = refused(_long_home(short_tmp), env={"XDG_RUNTIME_DIR": str(runtime)})
    assert expected in error and str(folder) in error


def test_bind_failures_are_one_line(short_tmp: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        error = refused(short_tmp / "a", "--port", str(port))
        assert f"cannot listen on 127.0.0.1 port {port}" in error
    assert "expected 0 to 65535" in refused(short_tmp / "b", "--port", "70000")


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_loopback(short_tmp: Path) -> None:
    if not _ipv6_loopback():
        error = refused(short_tmp / "home", "--host", "::1", "--port", "0")
        assert "cannot listen on ::1" in error
        pytest.skip("no IPv6 loopback here: checked that --host ::1 is a one-line error")
    proc = launch(short_tmp / "home", "--host", "::1", "--port", "0")
    try:
        info = json.loads(daemon_info_path(short_tmp / "home").read_text())
        assert info["host"] == "::1"
        headers = {"Authorization": f"Bearer {info['token']}"}
        with httpx.Client(base_url=f"http://[::1]:{info['port']}", headers=headers) as client:
            assert client.get("/api/v1/health").json() == {"status": "ok"}
            foreign = client.get("/api/v1/health", headers={"Host": f"evil.test:{info['port']}"})
            assert foreign.status_code == 403
    finally:
        stop(proc)


# ------------------------------------------------------------------------ slow connections


def trickle(
    sockets: list[socket.socket], prefix: bytes, every: float, give_up: float
) -> dict[socket.socket, tuple[float, bytes]]:
    """Send one byte of ``prefix`` then one ``x`` per ``every`` seconds on each socket until
    the server closes it; (seconds until closed, what the server sent) for each."""
    start = time.monotonic()
    sent = dict.fromkeys(sockets, 0)
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    answers = {s: b"" for s in sockets}
    next_send = start
    while len(closed) < len(sockets) and time.monotonic() - start < give_up:
        now = time.monotonic()
        if now >= next_send:
            for s in sockets:
                if s in closed:
                    continue
                byte = prefix[sent[s] : sent[s] + 1] or b"x"
                try:
                    s.send(byte)
                    sent[s] += 1
                except OSError:
                    closed[s] = (now - start, answers[s])
            next_send = now + every
        open_ = [s for s in sockets if s not in closed]
        readable, _, _ = select.select(open_, [], [], max(0.0, next_send - time.monotonic()))
        for s in readable:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                answers[s] += data
            else:
                closed[s] = (time.monotonic() - start, answers[s])
    return closed


def test_slow_clients_are_cut_off_within_the_deadlines(daemon: Daemon) -> None:
    port = daemon.info["port"]
    heads = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    idle = socket.create_connection(("127.0.0.1", port))  # connects, never sends a byte
    bodies = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for s in bodies:  # a whole head, then a body that never finishes
        s.sendall(
            b"POST /api/v1/sweeps HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n"
            % (port, daemon.info["token"].encode())
        )
    head = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    results: dict[socket.socket, tuple[float, bytes]] = {}

    def slow_bodies() -> None:
        results.update(trickle(bodies, b"", 0.5, BODY_TIMEOUT + 2 * SLACK))

    body_thread = threading.Thread(target=slow_bodies)
    body_thread.start()
    try:
        results.update(trickle(heads, head, 0.5, HEAD_TIMEOUT + 2 * SLACK))
        body_thread.join(BODY_TIMEOUT + 3 * SLACK)
        assert all(s in results for s in heads + bodies), "every slow connection is closed"
        for s in heads:
            seconds, answer = results[s]
            assert seconds < HEAD_TIMEOUT + SLACK
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith(
                "request not received within"
            )
        for s in bodies:
            assert results[s][0] < BODY_TIMEOUT + SLACK
        idle.settimeout(SLACK)  # it was cut off with the slow heads, long ago
        said = b""
        while chunk := idle.recv(65536):
            said += chunk
        assert said.startswith(b"HTTP/1.1 408 ")
    finally:
        for s in [*heads, *bodies, idle]:
            s.close()
    with daemon.unix() as client:
        assert client.get("/api/v1/health").status_code == 200, "the daemon serves on"


def test_connections_over_the_cap_get_a_json_503(daemon: Daemon) -> None:
    port = daemon.info["port"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT) as extra:
            answer = b""
            while chunk := extra.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert "too many connections" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        with daemon.unix() as client:  # counted apart: the local CLI is not locked out
            assert client.get("/api/v1/health").status_code == 200
    finally:
        for s in held:
            s.close()


# -------------------------------------------------------------------- Host, Origin, errors


def test_host_and_origin_must_name_the_loopback_socket(daemon: Daemon) -> None:
    port = daemon.info["port"]
    with daemon.tcp(daemon.info["token"]) as client:
        rebound = client.get("/api/v1/health", headers={"Host": f"evil.test:{port}"})
        assert rebound.status_code == 403 and "Host" in rebound.json()["error"]
        no_port = client.get("/api/v1/health", headers={"Host": "127.0.0.1"})
        assert no_port.status_code == 403
        origin = client.get("/api/v1/health", headers={"Origin": "http://evil.test"})
        assert origin.status_code == 403 and "cross-origin" in origin.json()["error"]
        same = client.get("/api/v1/health", headers={"Origin": f"http://127.0.0.1:{port}"})
        assert same.status_code == 200
        named = client.get("/api/v1/health", headers={"Host": f"localhost:{port}"})
        assert named.status_code == 200
    with daemon.tcp() as client:  # refused before the token is even looked at
        assert client.get("/", headers={"Host": f"evil.test:{port}"}).status_code == 403
    with daemon.unix() as client:  # a browser cannot reach the socket: any Host will do
        assert client.get("/api/v1/health", headers={"Host": "d"}).status_code == 200


def test_every_error_is_json(daemon: Daemon) -> None:
    with daemon.unix() as client:
        deep = client.post("/api/v1/sweeps", content=b"[" * 100_000 + b"]" * 100_000)
        assert deep.status_code == 400
        assert deep.json() == {"error": "body: JSON nested deeper than 64 levels"}
        nested = b"[" * 500 + b"]" * 500  # parses, but would make what reads it recurse
        for path in (
            "/api/v1/sweeps",
            "/api/v1/sweeps/x/configurations",
            "/api/v1/sweeps/x/resume",
        ):
            shallow_enough = client.post(path, content=nested)
            assert shallow_enough.status_code == 400, shallow_enough.text
            assert "nested deeper" in shallow_enough.json()["error"]
        digits = client.post("/api/v1/sweeps", content=b"1" * 5000)
        assert digits.status_code == 400 and "expected JSON" in digits.json()["error"]
        latin = client.post("/api/v1/sweeps", content=b'{"spec": "\xff"}')
        assert latin.status_code == 400 and "expected JSON" in latin.json()["error"]
        method = client.delete("/api/v1/sweeps")
        assert method.status_code == 405 and method.headers["allow"]
        assert method.json() == {"error": "method DELETE not allowed on /api/v1/sweeps"}
        big = client.post("/api/v1/sweeps", content=b"x" * (1024 * 1024 + 1))
        assert big.status_code == 413 and "request body over" in big.json()["error"]

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"x" * 100_000

        chunked = client.post("/api/v1/sweeps", content=chunks())
        assert chunked.status_code == 413 and chunked.json()["error"]
        offset = client.get("/api/v1/runs/nope/logs", params={"offset": "²"})
        assert offset.status_code == 404 and offset.json()["error"]
    with socket.socket(socket.AF_UNIX) as raw:  # not HTTP at all
        raw.connect(daemon.info["socket"])
        raw.sendall(b"NOT HTTP\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "malformed HTTP request"}


# ------------------------------------------------------------------------------ big logs


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_reading_a_big_log_keeps_the_daemon_small(daemon: Daemon) -> None:
    spec = (
        "version: 1.1\nkind: component\n"
        'run: {kind: job, container: {command: ["/bin/sh", "-c", "echo first"]}}\n'
    )
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        answer = client.post("/api/v1/sweeps", json={"spec": spec})
        assert answer.status_code == 201, answer.text + daemon_log(daemon.proc)
        sweep = answer.json()["sweep"]
        run_id = ""
        for kind, data in sse(events):
            event = json.loads(data)
            if kind == "RunCreated" and event["sweep_id"] == sweep:
                run_id = event["run_id"]
            if kind == "SweepFinished" and event["sweep_id"] == sweep:
                break
    log = daemon.home / "runs" / run_id / "stdout.log"
    line = b"%s\n" % (b"y" * 1023)
    with log.open("ab") as f:  # ~100 MB, appended the way a run's output would be
        for _ in range(100):
            f.write(line * 1024)
    size = log.stat().st_size
    pid = daemon.proc.pid
    before = status_kib(pid, "VmRSS")
    peak_reset = True
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        peak_reset = False
    received: list[int] = []

    def read(offset: int) -> None:
        total = 0
        with (
            daemon.unix() as client,
            client.stream(
                "GET", f"/api/v1/runs/{run_id}/logs", params={"offset": str(offset)}
            ) as response,
        ):
            assert int(response.headers["content-length"]) == size - offset
            for chunk in response.iter_bytes():
                total += len(chunk)
        received.append(total)

    offsets = [0, 0, 6, size // 2]
    readers = [threading.Thread(target=read, args=(o,)) for o in offsets]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(120)
    assert sorted(received) == sorted(size - o for o in offsets)
    after = status_kib(pid, "VmHWM" if peak_reset else "VmRSS")
    assert (after - before) < 64 * 1024, f"the daemon grew by {(after - before) // 1024} MiB"
    with daemon.unix() as client:
        assert client.get(f"/api/v1/runs/{run_id}/logs").content[:6] == b"first\n"
        tail = client.get(f"/api/v1/runs/{run_id}/logs", params={"offset": str(size - 1024)})
        assert tail.content == line
        assert (
            client.get(f"/api/v1/runs/{run_id}/logs", params={"offset": str(size + 10)}).content
            == b""
        )
