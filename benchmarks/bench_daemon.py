"""The daemon: submissions per second against a bare Starlette/uvicorn POST, measured in the
same invocation, and the delay from a run writing a log line to an SSE follower receiving it.

Rows (each round starts every server afresh, in a fresh home; rounds interleaved):
- ``bare Starlette POST``: the floor of this stack, a Starlette app on uvicorn (h11, asyncio)
  on a Unix socket whose one route parses the JSON body and answers 201 with a small JSON;
- ``bare POST + a synced SQLite commit``: the same, answering only after an INSERT committed
  with ``synchronous=FULL`` in WAL mode (on the loop, one commit per request): the floor of an
  answer that survives a crash, as ours must (a 201 means the sweep is committed);
- ``ours: one-run sweep``: ``POST /api/v1/sweeps`` of a spec with one ``/bin/true`` run: the
  answer (201) comes once the sweep is committed to the journal; the runs go on meanwhile;
- ``ours: open sweep, no runs``: the same for an open mapping with no values yet: what
  accepting a sweep costs, without its runs competing for the cores.

Clients are separate processes speaking HTTP/1.1 with keep-alive over the Unix socket
(``http.client``, so that the client's own cost is small and the same for every row): one
client posting one request after another, then eight at once. "vs bare" is the median over
rounds of the per-round ratio. Peak RSS is the server's (GNU time, when installed).

Target (issue 14): submissions >= 50% of the bare POST's rate (one client and eight).

Run: ``.venv/bin/python benchmarks/bench_daemon.py`` (3 rounds of 400 requests per row and
client count), or ``--quick`` (1 round of 100), or ``--requests N --rounds R``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks_common import GNU_TIME, Measure, Table, interleave, median, scratch

from orchestrator.diagnostics import is_ready_record

CLIENTS = 8
#: How the daemon is started (a profiling wrapper may replace it).
ORCHESTRATOR = [sys.executable, "-m", "orchestrator"]

BARE_SERVER = textwrap.dedent("""
    import os, socket, sqlite3, sys, uuid
    import anyio, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    db = None
    if len(sys.argv) > 2:  # durable: each answer after its own synced commit
        db = sqlite3.connect(sys.argv[2], isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE s (id TEXT, spec TEXT)")

    async def submit(request):
        body = await request.json()
        sweep = uuid.uuid4().hex
        if db is not None:
            db.execute("INSERT INTO s VALUES (?, ?)", (sweep, body["spec"]))
        return JSONResponse({"sweep": sweep, "runs": 1, "warnings": []}, status_code=201)

    path = sys.argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    app = Starlette(routes=[Route("/api/v1/sweeps", submit, methods=["POST"])],
                    max_body_size=1 << 20)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off"))
    server.run(sockets=[sock])
""")

#: One client: connects, waits for a byte on stdin (all clients start together), posts
#: ``n`` bodies one after another on one keep-alive connection, prints how long that took.
CLIENT = textwrap.dedent("""
    import http.client, socket, sys, time
    class Unix(http.client.HTTPConnection):
        def __init__(self, path):
            super().__init__("daemon")
            self.path = path
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self.path)
    path, n, body = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    conn = Unix(path)
    conn.connect()
    headers = {"Content-Type": "application/json"}
    print("connected", flush=True)
    sys.stdin.read(1)
    started = time.perf_counter()
    for _ in range(n):
        conn.request("POST", "/api/v1/sweeps", body, headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 201:
            sys.exit(f"HTTP {response.status}: {answer[:200]!r}")
    print(time.perf_counter() - started, flush=True)
""")

ONE_RUN = "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [/bin/true]}}\n"
OPEN = (
    "version: 1.1\nkind: operation\nmatrix: {kind: mapping, values: []}\n"
    "component:\n  run: {kind: job, container: {command: [/bin/true]}}\n"
)

LINES = 200
TICKER = (
    "import sys, time\n"
    "for i in range({lines}):\n"
    "    print(f'{{i}} {{time.time()}}', flush=True)\n"
    "    time.sleep(0.01)\n"
)


def post_rate(path: str, body: str, clients: int, total: int) -> float:
    """Requests per second of ``clients`` client processes posting ``total`` bodies in all."""
    each = max(1, total // clients)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, path, str(each), body],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "connected":
            raise SystemExit("a benchmark client could not connect")
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("g")
        proc.stdin.close()
    for proc in procs:
        if proc.wait(300) != 0:
            raise SystemExit("a benchmark client failed")
    return each * clients / (time.perf_counter() - started)


class Server:
    """A server process under GNU time (for its peak RSS), its output in a file, stopped
    with SIGTERM."""

    def __init__(self, argv: list[str], folder: Path, env: dict[str, str] | None = None) -> None:
        self.rss_file = folder / "rss"
        self.log = folder / "server.log"
        if os.access(GNU_TIME, os.X_OK):
            argv = [GNU_TIME, "-q", "-f", "%M", "-o", str(self.rss_file), *argv]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        self.pid = self.proc.pid  # the server's own (below GNU time): see wait_until

    def wait_until(self, ready: Callable[[], bool], pid: Callable[[], int] | None = None) -> None:
        """Until ``ready()``; then learn the server's pid (``pid()``, else GNU time's child)."""
        deadline = time.monotonic() + 60
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.01)
        self.pid = pid() if pid is not None else _child_pid(self.proc.pid)

    def stop(self) -> int:
        """SIGTERM the server; its peak RSS in KiB (0 when unknown)."""
        os.kill(self.pid, signal.SIGTERM)
        self.proc.wait(60)
        text = self.rss_file.read_text().split() if self.rss_file.exists() else []
        return int(text[-1]) if text and text[-1].isdigit() else 0


def _child_pid(pid: int) -> int:
    """The pid of the program GNU time runs (``pid`` itself when not run under it)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children else pid


def _answers(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
    except OSError:
        return False
    return True


def bare_row(base: Path, requests: int, durable: bool = False) -> Callable[[], Measure]:
    def once() -> Measure:
        with scratch(base, prefix="b-") as tmp:
            path = str(tmp / "s.sock")
            db = [str(tmp / "s.sqlite")] if durable else []
            server = Server([sys.executable, "-c", BARE_SERVER, path, *db], tmp)
            try:
                server.wait_until(lambda: _answers(path))
                body = json.dumps({"spec": ONE_RUN})
                one = post_rate(path, body, 1, requests)
                many = post_rate(path, body, CLIENTS, requests)
            finally:
                rss = server.stop()
        return Measure(0.0, rss, {"1": one, "8": many})

    return once


def start_daemon(folder: Path, tree: str | None = None) -> tuple[Server, str]:
    """A daemon on a fresh home in ``folder``, ready; and its socket. ``tree``: the
    orchestrator of that checkout instead of this one (``PYTHONPATH``; ``PYTHONSAFEPATH``, or
    ``-m``/``-c`` would put the current folder, this checkout, first)."""
    home = folder / "h"
    argv = [*ORCHESTRATOR, "daemon", "--home", str(home)]
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}
    server = Server([*argv, "--max-runs", "4"], folder, env)
    info = home / "daemon" / "daemon.json"

    def ready() -> bool:
        return any(is_ready_record(line) for line in server.log.read_text().splitlines())

    server.wait_until(ready, lambda: int(json.loads(info.read_text())["pid"]))
    return server, str(json.loads(info.read_text())["socket"])


def wait_idle(path: str) -> None:
    """Until the daemon runs no sweep (the runs of the last batch have ended)."""
    while _get(path, "/api/v1/ready").get("sweeps"):
        time.sleep(0.05)


def _get(path: str, url: str) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: daemon\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    value: dict[str, object] = json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")
    return value


def ours_row(
    base: Path, requests: int, spec: str, extra: dict[str, object], tree: str | None = None
) -> Callable[[], Measure]:
    def once() -> Measure:
        with scratch(base, prefix="o-") as folder:
            server, path = start_daemon(folder, tree)
            try:
                body = json.dumps({"spec": spec, **extra})
                one = post_rate(path, body, 1, requests)
                if not extra:
                    wait_idle(path)
                many = post_rate(path, body, CLIENTS, requests)
            except SystemExit as exc:
                said = server.log.read_text()[-1500:]
                raise SystemExit(f"{exc}; the daemon said: {said}") from None
            finally:
                rss = server.stop()
        return Measure(0.0, rss, {"1": one, "8": many})

    return once


def log_delays(base: Path, lines: int) -> list[float]:
    """Milliseconds from a run printing a line to a follower of its log receiving it."""
    import httpx

    ticker = (
        "version: 1.1\nkind: component\nrun: {kind: job, container: {command: "
        f"{json.dumps([sys.executable, '-c', TICKER.format(lines=lines)])}}}}}\n"
    )
    delays: list[float] = []
    with scratch(base, prefix="l-") as folder:
        server, path = start_daemon(folder)
        try:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=path),
                base_url="http://daemon",
                timeout=httpx.Timeout(10, read=None),
            ) as c:
                sweep = c.post("/api/v1/sweeps", json={"spec": ticker}).json()["sweep"]
                run_id = None
                while run_id is None:  # the run is in the journal as soon as it is created
                    runs = c.get(f"/api/v1/sweeps/{sweep}").json()["runs"]
                    run_id = runs[0]["id"] if runs else None
                follow = {"follow": "1"}
                with c.stream("GET", f"/api/v1/runs/{run_id}/logs", params=follow) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: ") and " " in line[6:]:
                            sent = float(line[6:].split()[1])
                            delays.append((time.time() - sent) * 1000)
                        elif line == "event: end":
                            break
        finally:
            server.stop()
    return delays[lines // 10 :]  # the first lines were written before the follower attached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 100 requests")
    parser.add_argument("--requests", type=int, help="requests per row and client count")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--tree",
        help="also measure the daemon of the checkout at TREE (an older commit: A/B in one "
        "invocation), in rows of its own",
    )
    args = parser.parse_args()
    requests = args.requests or (100 if args.quick else 400)
    rounds = args.rounds or (1 if args.quick else 3)
    # A short base: AF_UNIX paths are at most 107 bytes.
    base = Path(tempfile.gettempdir())
    rows = {
        "bare Starlette POST": bare_row(base, requests),
        "bare POST + a synced SQLite commit": bare_row(base, requests, durable=True),
        "ours: one-run sweep": ours_row(base, requests, ONE_RUN, {}),
        "ours: open sweep, no runs": ours_row(base, requests, OPEN, {"open": True}),
    }
    if args.tree:
        rows["TREE: one-run sweep"] = ours_row(base, requests, ONE_RUN, {}, args.tree)
        rows["TREE: open sweep, no runs"] = ours_row(
            base, requests, OPEN, {"open": True}, args.tree
        )
    results = interleave(rows, rounds)
    bare = results["bare Starlette POST"]
    table = Table(
        f"POST /api/v1/sweeps over the Unix socket, {requests} requests per cell, "
        f"median of {rounds} interleaved round(s)",
        ["", "1 client /s", "vs bare", f"{CLIENTS} clients /s", "vs bare", "peak RSS MB"],
    )
    for name, measures in results.items():
        cells = []
        for key in ("1", "8"):
            cells.append(f"{median([m.extra[key] for m in measures]):.0f}")
            ratios = [m.extra[key] / b.extra[key] for m, b in zip(measures, bare, strict=True)]
            cells.append(f"{median(ratios):.0%}")
        table.add(name, *cells, f"{median([m.rss_kib for m in measures]) / 1024:.1f}")
    table.print()
    delays = sorted(log_delays(base, 50 if args.quick else LINES))
    print()
    print(f"log line -> SSE follower: median {median(delays):.2f} ms, "
          f"p95 {delays[int(0.95 * (len(delays) - 1))]:.2f} ms ({len(delays)} lines); "
          "reference: a bare SSE event 0.26-0.61 ms (DAEMON.md)")  # fmt: skip


if __name__ == "__main__":
    main()
