"""Pipelines for the DAG tests: one tiny step script, a spec writer, and the journal's view."""

from __future__ import annotations

import os
import select
import sqlite3
import sys
import textwrap
from pathlib import Path

PY = sys.executable

#: ``step.py NAME X MARKS [MODE]``: appends ``NAME START END`` to MARKS/ran (a start and end
#: stamp), reports ``y = 2 * X`` (an output, and the metric of the same name), and exits 3 when
#: X < 0. MODE ``hold``: stays 0.4 s (overlaps are visible); ``block-once``: the first run of
#: NAME says so on the pipe MARKS/up-NAME (see :func:`wait_until_up`), then blocks until killed
#: (a later run goes through); ``fail-if-FILE``: exits 4 while MARKS/FILE exists.
STEP = """
import json, os, sys, time
name, x, marks = sys.argv[1], float(sys.argv[2]), sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else ""
start = time.time()
if mode == "block-once":
    first = os.path.join(marks, "blocked-" + name)
    if not os.path.exists(first):
        open(first, "w").close()
        up = os.path.join(marks, "up-" + name)
        if os.path.exists(up):  # a test waits on this pipe for the run to be up
            with open(up, "w") as pipe:
                pipe.write("up\\n")
        while True:
            time.sleep(60)
if mode == "hold":
    time.sleep(0.4)
if mode.startswith("fail-if-") and os.path.exists(os.path.join(marks, mode[8:])):
    sys.exit(4)
with open(os.path.join(marks, "ran"), "a") as f:
    f.write(f"{name} {start} {time.time()}\\n")
print(json.dumps({"metrics": {"y": x * 2}}), flush=True)
sys.exit(3 if x < 0 else 0)
"""


def step_component(tmp_path: Path) -> str:
    """The ``components:`` entry named ``step`` (inputs n, x, mode; output y), as YAML."""
    script = tmp_path / "step.py"
    script.write_text(STEP)
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    command = f'["{PY}", "{script}", "{{{{ n }}}}", "{{{{ x }}}}", "{marks}", "{{{{ mode }}}}"]'
    return textwrap.dedent(
        f"""
        - name: step
          inputs:
          - {{name: n, type: str}}
          - {{name: x, type: float}}
          - {{name: mode, type: str, value: "", isOptional: true}}
          outputs: [{{name: y, type: float}}]
          run: {{kind: job, container: {{command: {command}}}}}
        """
    ).strip()


def dag_spec(tmp_path: Path, operations: str, head: str = "", name: str = "dag.yaml") -> Path:
    """A pipeline file: ``head`` (concurrency, earlyStopping...) and ``operations`` (YAML list
    items) under ``run``, with the ``step`` component."""
    body = "\n".join(
        [
            "version: 1.1",
            "kind: component",
            "name: pipe",
            "run:",
            "  kind: dag",
            *[f"  {line}" for line in textwrap.dedent(head).strip().splitlines()],
            "  operations:",
            *[f"  {line}" for line in textwrap.dedent(operations).strip().splitlines()],
            "  components:",
            *[f"  {line}" for line in step_component(tmp_path).splitlines()],
        ]
    )
    path = tmp_path / name
    path.write_text(body + "\n")
    return path


def ran(tmp_path: Path) -> list[str]:
    """The names of the steps that ran to their end, in the order they ended."""
    file = tmp_path / "marks" / "ran"
    return [line.split()[0] for line in file.read_text().splitlines()] if file.exists() else []


def intervals(tmp_path: Path) -> list[tuple[float, float]]:
    file = tmp_path / "marks" / "ran"
    return [
        (float(a), float(b)) for _, a, b in (line.split() for line in file.read_text().splitlines())
    ]


def peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at once (an end before a start at the same instant)."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    live = top = 0
    for _, delta in points:
        live += delta
        top = max(top, live)
    return top


def rows(home: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "journal.sqlite") as conn:
        return list(conn.execute(sql, params))


def node_states(home: Path, dag_id: str) -> dict[str, str]:
    return {
        str(node): str(state)
        for node, state in rows(home, "SELECT node, state FROM sweeps WHERE parent_id = ?", dag_id)
    }


def expect_up(tmp_path: Path, name: str) -> Path:
    """Make the pipe on which the blocking run of step ``name`` will say it is up."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    pipe = marks / f"up-{name}"
    os.mkfifo(pipe)
    return pipe


def wait_until_up(pipe: Path, timeout: float = 60) -> None:
    """Wait (select on the pipe, no polling) until the run writes to it."""
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable and os.read(fd, 16) == b"up\n", f"{pipe.name}: the run never came up"
    finally:
        os.close(fd)
