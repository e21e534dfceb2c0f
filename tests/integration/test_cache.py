"""The cache plugin with real runs: hits, misses, ttl, io, code changes, in-flight twins."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.store.cache import CacheStore, Claim
from orchestrator.store.layout import run_paths
from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def states_of(home: Path, run_id: str) -> list[str]:
    with sqlite3.connect(home / "journal.sqlite") as conn:
        rows = conn.execute(
            "SELECT to_state FROM transitions WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
    return [state for (state,) in rows]


def test_quickstart_twice_second_is_all_cache_hits(tmp_path: Path) -> None:
    # A copy: the key covers the git tree around the spec, and this repository may change
    # while the suite runs (an edit anywhere in it rightly misses).
    example = shutil.copytree(ROOT / "examples" / "quickstart", tmp_path / "quickstart")
    home = tmp_path / "home"
    args = [PY, "-m", "orchestrator", str(example / "mapping.yaml"), "--json", "--home", str(home)]
    first = json.loads(
        subprocess.run(
            args, capture_output=True, text=True, cwd=tmp_path, check=True, timeout=120
        ).stdout
    )
    second = json.loads(
        subprocess.run(
            args, capture_output=True, text=True, cwd=tmp_path, check=True, timeout=120
        ).stdout
    )
    assert [r["reason"] for r in second["runs"]] == ["cache_hit", "cache_hit"]
    assert [r["outputs"] for r in second["runs"]] == [r["outputs"] for r in first["runs"]]
    assert [r["metrics"] for r in second["runs"]] == [r["metrics"] for r in first["runs"]]
    for old, new in zip(first["runs"], second["runs"], strict=True):
        old_log = (home / "runs" / old["id"] / "stdout.log").read_text()
        assert (home / "runs" / new["id"] / "stdout.log").read_text() == old_log
    # Nothing ran: a hit goes from queued to succeeded, never starting a process.
    for run in second["runs"]:
        assert states_of(home, run["id"]) == ["created", "queued", "succeeded"]


def marker_spec(
    write: Callable[..., Path],
    marker: Path,
    values: str,
    *,
    cache: str = "",
    script: Path | None = None,
    name: str = "spec.yaml",
) -> Path:
    code = f"open({str(marker)!r}, 'a').write('{{{{ a }}}} {{{{ b }}}}' + chr(10))"
    command = f'["{PY}", "{script}", "{{{{ a }}}}"]' if script else f'["{PY}", -c, "{code}"]'
    return write(
        f"""
        version: 1.1
        kind: operation
        {cache}
        matrix: {{kind: mapping, values: {values}}}
        component:
          inputs: [{{name: a, type: int}}, {{name: b, type: int, value: 0}}]
          run: {{kind: job, container: {{command: {command}}}}}
    """,
        name,
    )


def runs_of(result: CliResult) -> list[tuple[int, str | None]]:
    return [(r["params"]["a"], r["reason"]) for r in json.loads(result.out)["runs"]]


def test_changing_one_value_reruns_only_that_configuration(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", str(tmp_path / "home")
    spec = marker_spec(write, marker, "[{a: 1}, {a: 2}, {a: 3}]")
    assert cli(str(spec), "--json", "--home", home).code == 0
    marker_spec(write, marker, "[{a: 1}, {a: 5}, {a: 3}]")
    second = cli(str(spec), "--json", "--home", home)
    assert runs_of(second) == [(1, "cache_hit"), (5, None), (3, "cache_hit")]
    lines = marker.read_text().splitlines(keepends=True)
    assert sorted(lines[:3]) == ["1 0\n", "2 0\n", "3 0\n"], "the first sweep, in any order"
    assert lines[3:] == ["5 0\n"], "the second sweep runs only the changed configuration"


def test_misses_claim_in_one_statement_and_a_leftover_claim_is_taken_over(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """A fresh key is claimed without a lookup (the run records ``no entry``, its claim is
    let go at the end); a key a dead orchestrator left claimed falls back to the full path,
    which takes the claim over instead of waiting."""
    marker, home = tmp_path / "m.txt", tmp_path / "home"
    spec = marker_spec(write, marker, "[{a: 1}, {a: 2}]")
    store = CacheStore(home)
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True)
    leftover = Claim(
        key="k", run_id="gone", sweep_id="s", pid=int(dead.stdout), pid_start=1, claimed_at=0.0
    )
    assert store.claim(leftover, lambda holder: True) is None
    result = cli(str(spec), "--json", "--home", str(home))
    assert runs_of(result) == [(1, None), (2, None)]
    for run in json.loads(result.out)["runs"]:
        decision = store.decision(run["id"])
        assert decision is not None and (decision.verdict, decision.detail) == (
            "miss",
            "no entry with this key",
        )
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT run_id FROM claims").fetchall() == [("gone",)]
    (key,) = [entry.key for entry in store.entries() if entry.params["a"] == 1]
    store.release("k", "gone")
    store.claim(msgspec.structs.replace(leftover, key=key), lambda holder: True)
    store.delete(key)
    store.close()
    assert runs_of(cli(str(spec), "--json", "--home", str(home))) == [(1, None), (2, "cache_hit")]
    assert len(marker.read_text().splitlines()) == 3, "the dead one's key ran again, once"


def test_ttl_expiry(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", tmp_path / "home"
    spec = marker_spec(write, marker, "[{a: 1}]", cache="cache: {ttl: 3600}")
    assert cli(str(spec), "--home", str(home)).code == 0
    assert runs_of(cli(str(spec), "--json", "--home", str(home))) == [(1, "cache_hit")]
    store = CacheStore(home)
    (entry,) = store.entries()
    store.put(msgspec.structs.replace(entry, finished_at=entry.finished_at - 3601))
    store.close()
    assert runs_of(cli(str(spec), "--json", "--home", str(home))) == [(1, None)]
    assert len(marker.read_text().splitlines()) == 2


def test_io_filters_the_inputs_in_the_key(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", str(tmp_path / "home")
    script = tmp_path / "uses_a.py"
    script.write_text(f"import sys; open({str(marker)!r}, 'a').write(sys.argv[1] + chr(10))\n")
    filtered = marker_spec(write, marker, "[{a: 1}]", cache="cache: {io: [a]}", script=script)
    assert cli(str(filtered), "--home", home).code == 0
    hit = cli(str(filtered), "-P", "b=7", "--json", "--home", home)
    assert runs_of(hit) == [(1, "cache_hit")], "b is not in cache.io: it does not count"
    plain = marker_spec(write, marker, "[{a: 1}]", script=script, name="plain.yaml")
    assert cli(str(plain), "--home", home).code == 0
    miss = cli(str(plain), "-P", "b=7", "--json", "--home", home)
    assert runs_of(miss) == [(1, None)], "without cache.io every input counts"


def test_editing_the_script_invalidates_the_cache(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", str(tmp_path / "home")
    script = tmp_path / "train.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('v1' + chr(10))\n")
    spec = marker_spec(write, marker, "[{a: 1}]", script=script)
    assert cli(str(spec), "--home", home).code == 0
    assert runs_of(cli(str(spec), "--json", "--home", home)) == [(1, "cache_hit")]
    script.write_text(f"open({str(marker)!r}, 'a').write('v2' + chr(10))\n")
    assert runs_of(cli(str(spec), "--json", "--home", home)) == [(1, None)]
    assert marker.read_text().splitlines() == ["v1", "v2"]


def test_failed_runs_are_never_cached_and_twins_in_flight_run_once(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", str(tmp_path / "home")
    failing = write(
        f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, values: [{{a: 1}}]}}
        component:
          inputs: [{{name: a, type: int}}]
          run: {{kind: job, container: {{command: ["{PY}", -c, "raise SystemExit(3)"]}}}}
    """,
        "failing.yaml",
    )
    assert cli(str(failing), "--home", home).code == 1
    assert CacheStore(Path(home)).entries() == []
    twins = marker_spec(write, marker, "[{a: 4}, {a: 4}, {a: 4}]")
    result = cli(str(twins), "--json", "--concurrency", "3", "--home", home)
    assert result.code == 0, result.err
    reasons = [r for _, r in runs_of(result)]
    assert sorted(reasons, key=str) == sorted([None, "cache_hit", "cache_hit"], key=str)
    assert marker.read_text().splitlines() == ["4 0"], "identical runs in flight ran once"


def test_nocache_and_single_runs(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    marker, home = tmp_path / "m.txt", str(tmp_path / "home")
    spec = marker_spec(write, marker, "[{a: 1}]")
    assert cli(str(spec), "--home", home).code == 0
    assert runs_of(cli(str(spec), "--nocache", "--json", "--home", home)) == [(1, None)]
    assert runs_of(cli(str(spec), "--cache", "false", "--json", "--home", home)) == [(1, None)]
    assert runs_of(cli(str(spec), "--no-plugin", "cache", "--json", "--home", home)) == [(1, None)]
    single = write(
        f"""
        version: 1.1
        kind: component
        run: {{kind: job, container: {{command: ["{PY}", -c, "pass"]}}}}
    """,
        "single.yaml",
    )
    for _ in range(2):
        (run,) = json.loads(cli(str(single), "--json", "--home", home).out)["runs"]
        assert run["reason"] is None, "a single run is not cached unless asked"
    (run,) = json.loads(cli(str(single), "--cache", "true", "--json", "--home", home).out)["runs"]
    (run,) = json.loads(cli(str(single), "--cache", "true", "--json", "--home", home).out)["runs"]
    assert run["reason"] == "cache_hit"


def test_cache_ls_and_clear(
    write: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    home = str(tmp_path / "home")
    spec = marker_spec(write, tmp_path / "m.txt", "[{a: 1}, {a: 2}]")
    assert cli(str(spec), "--home", home).code == 0
    listed = json.loads(cli("cache", "ls", "--json", "--home", home).out)
    assert len(listed) == 2 and {e["params"]["a"] for e in listed} == {1, 2}
    assert cli("cache", "clear", "--older-than", "1d", "--home", home).out == (
        "removed 0 cache entries\n"
    )
    assert cli("cache", "clear", "--home", home).out == "removed 2 cache entries\n"
    assert cli("cache", "ls", "--home", home).out.endswith("is empty\n")
    assert cli("cache", "clear", "--older-than", "soon", "--home", home).code == 2


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["lr", "depth", "name", "seed"]),
        st.integers(0, 5) | st.sampled_from(["x", "y"]),
        min_size=1,
    ),
    st.randoms(),
)
def test_cache_key_is_stable_under_order_and_formatting(
    values: dict[str, object], rng: random.Random
) -> None:
    import tempfile

    import anyio
    from orchestrator_plugins.cache import RunCache  # type: ignore[import-not-found]

    from orchestrator.spec import compile_plan, load_text

    inputs = "".join(
        f"\n  - {{name: {k}, type: {'int' if isinstance(v, int) else 'str'}}}"
        for k, v in sorted(values.items())
    )

    def spec(entry: str) -> str:
        return (
            f"version: 1.1\nkind: operation\nmatrix:\n  kind: mapping\n  values:\n"
            f"  - {entry}\ncomponent:\n  inputs:{inputs}\n  run:\n    kind: job\n"
            f"    container: {{command: [train, '{{{{ params.as_args }}}}']}}\n"
        )

    items = list(values.items())
    shuffled = items[:]
    rng.shuffle(shuffled)
    flow = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in items) + "}"
    block = "\n    ".join(f"{k}: {json.dumps(v)}" for k, v in shuffled)
    changed = dict(values)
    key0 = next(iter(changed))
    old = changed[key0]
    changed[key0] = old + 1 if isinstance(old, int) else f"{old}z"

    class Ctx:
        def __init__(self, text: str, home: Path) -> None:
            self.plan = compile_plan(load_text(text, "s.yaml", Path(home)), paths=run_paths(home))
            self.spec = self.plan.spec
            self.home = home

        def per_sweep(self, owner: object, factory: Callable[[], Any]) -> Any:
            return factory()

    async def key(text: str, home: Path) -> str:
        ctx = Ctx(text, home)
        run = type("Run", (), {})()
        run.spec = next(ctx.plan.runs())
        run.id = run.spec.uuid
        return str(await RunCache().key(run, ctx, None))

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        a = anyio.run(key, spec(flow), home)
        b = anyio.run(key, spec(block), home)
        assert a == b, "key order and YAML style do not change the key"
        flow_changed = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in changed.items()) + "}"
        assert anyio.run(key, spec(flow_changed), home) != a, "one changed value changes it"
