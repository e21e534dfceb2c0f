"""Adaptive search, side by side in one invocation: the best value each search finds on a
synthetic objective, and its wall time, at concurrency 4.

The objective is Branin (x1 uniform in [-5, 10], x2 uniform in [0, 15]; its known minimum is
0.397887), run as a stdlib script that sleeps ``--sleep`` (50 ms) and prints its ``loss`` as
a metrics line. Every row runs the same script as a real subprocess per configuration:

- ``ours: KIND``: ``python -m orchestrator run SPEC`` (a real subprocess, a throwaway home,
  plugins on as a user gets them) for ``random``, ``bayes`` (scikit-learn GP, ucb), ``tpe``
  (Polyaxon 2.18's kind; Optuna's TPE behind it), ``hyperopt`` (``algorithm: tpe``, the
  hyperopt package) and ``hyperband``; every kind makes the same N runs except hyperband,
  whose own schedule (``maxIterations`` R, ``eta`` 3) decides its N.
- ``peer: Optuna TPE``: Optuna's own TPE (``TPESampler(seed=S)``, its defaults) driving the
  same script directly: ask/tell from 4 worker threads, each running the script as a
  subprocess, N trials.

Hyperband's resource is ``epochs`` (1..R). A run at ``epochs`` e sleeps ``sleep * e / R`` (a
full run costs what a run of the other rows costs) and reports Branin plus noise of standard
deviation ``10 * (R - e) / (e * (R - 1))``: 10 at one epoch, falling like 1/e, none at R, the
same draw for a configuration at every resource (a learning curve that converges to the true
value). Hyperband's best is the best run at ``epochs`` R, where the value is exact; the other
rows report exact values. "full-run equivalents" is the sum of epochs over R: the sleep
hyperband paid, counted in full runs. "slots busy" is the runs' summed duration over the 4
slots from the first start to the last end: below 100%, slots sat free (waiting for a
suggestion, say).

Rounds are seeds: each round runs every row once with that round's seed (the order rotated),
and a figure is the median over rounds. Best values depend on the seed, not on the load; wall
times depend on the load (2 shared cores here): compare rows of one invocation only.

Run: ``.venv/bin/python benchmarks/bench_search.py``: N 60, hyperband R 27, 5 seeds (about
3 minutes on 2 shared cores); ``--quick``: N 12, R 9, 1 seed (under a minute); or choose with
``--runs N --seeds K --sleep S``. Needs the ``search`` extra (``pip install -e '.[search]'``,
see ``install-peers.sh``); a row whose library is missing says "not available".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks_common import (
    Measure,
    Table,
    interleave,
    median,
    ratio_median,
    run_measured,
    scratch,
)

CONCURRENCY = 4
PEER = "peer: Optuna TPE, ask/tell, 4 threads"
BRANIN_MIN = 0.397887
ROOT = Path(__file__).resolve().parent.parent

#: The objective: ``branin.py X1 X2 SLEEP [EPOCHS R]``.
BRANIN = textwrap.dedent("""
    import json, math, random, sys, time
    x1, x2, sleep = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    epochs, most = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (1, 1)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    value = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
    if epochs < most:
        sd = 10 * (most - epochs) / (epochs * (most - 1))
        value += sd * random.Random(f"{x1!r} {x2!r}").gauss(0, 1)
    time.sleep(sleep * epochs / most)
    print(json.dumps({"metrics": {"loss": value}}), flush=True)
""")

#: Optuna's own TPE driving the script: ``peer_optuna.py SCRIPT SLEEP N SEED OUT``.
PEER_OPTUNA = textwrap.dedent("""
    import json, subprocess, sys, threading, time
    import optuna
    script, sleep, n, seed, out = sys.argv[1:]
    n, seed = int(n), int(seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    lock, asked, failed, spans = threading.Lock(), [0], [], []
    def worker():
        try:
            work()
        except Exception as exc:  # a failed run fails the row, as it fails ours
            failed.append(exc)
    def work():
        while True:
            with lock:
                if asked[0] >= n:
                    return
                asked[0] += 1
                trial = study.ask()
                x1, x2 = trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)
            start = time.time()
            done = subprocess.run([sys.executable, script, repr(x1), repr(x2), sleep],
                                  capture_output=True, text=True, check=True)
            spans.append((start, time.time()))
            line = next(l for l in done.stdout.splitlines() if l.startswith("{"))
            study.tell(trial, json.loads(line)["metrics"]["loss"])
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        sys.exit(f"a run failed: {failed[0]!r}")
    with open(out, "w") as f:
        json.dump({"best": study.best_value, "runs": len(study.trials), "spans": spans}, f)
""")

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: {kind}
  concurrency: {concurrency}
  seed: {seed}
{settings}
  params:
    x1: {{kind: uniform, value: [-5, 10]}}
    x2: {{kind: uniform, value: [0, 15]}}
component:
  inputs: [{{name: x1, type: float}}, {{name: x2, type: float}}{more_inputs}]
  run:
    kind: job
    container:
      command: [{python}, {script}, "{{{{ x1 }}}}", "{{{{ x2 }}}}", "{sleep}"{more_args}]
"""

#: What the rows import, once per sweep: a fixed part of their wall time.
LIBRARIES = ("sklearn.gaussian_process", "optuna", "hyperopt")

METRIC = "  metric: {name: loss, optimization: minimize}"


def settings(n: int, most: int) -> dict[str, tuple[str, str]]:
    """Each kind of ours → (its matrix settings, the library it needs, '' for none)."""
    quarter = n // 4
    return {
        "random": (f"  numRuns: {n}", ""),
        "bayes": (
            f"  numInitialRuns: {quarter}\n  maxIterations: {n - quarter}\n{METRIC}\n"
            "  utilityFunction:\n    acquisitionFunction: ucb\n    kappa: 2.576\n"
            "    gaussianProcess: {kernel: matern, lengthScale: 1.0, nu: 2.5,"
            " numRestartsOptimizer: 0}",
            "sklearn.gaussian_process",
        ),
        # numRuns per iteration, maxIterations more after the first: 4 iterations of N/4.
        "tpe": (f"  numRuns: {quarter}\n  maxIterations: 3\n{METRIC}", "optuna"),
        "hyperopt": (
            f"  algorithm: tpe\n  numRuns: {quarter}\n  maxIterations: 3\n{METRIC}",
            "hyperopt",
        ),
        "hyperband": (
            f"  maxIterations: {most}\n  eta: 3\n  resource: {{name: epochs, type: int}}\n"
            f"  resume: false\n{METRIC}",
            "",
        ),
    }


def missing(*modules: str) -> str | None:
    """Why a row that needs ``modules`` cannot run here (the first one missing), None when it
    can."""
    for module in filter(None, modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"not available ({exc.name or module} missing)"
    return None


def write_spec(base: Path, kind: str, body: str, seed: int, sleep: float, most: int) -> Path:
    hyperband = kind == "hyperband"
    text = SPEC.format(
        kind=kind,
        concurrency=CONCURRENCY,
        seed=seed,
        settings=body,
        python=json.dumps(sys.executable),
        script=json.dumps(str(base / "branin.py")),
        sleep=sleep,
        more_inputs=", {name: epochs, type: int}" if hyperband else "",
        more_args=f', "{{{{ epochs }}}}", "{most}"' if hyperband else "",
    )
    path = base / f"{kind}-{seed}.yaml"
    path.write_text(text)
    return path


def busy(spans: list[tuple[float, float]]) -> float:
    """How full the slots were: the runs' summed duration over ``CONCURRENCY`` slots from the
    first start to the last end (1.0: never a slot free while the search went on)."""
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    return sum(end - start for start, end in spans) / (CONCURRENCY * (last - first))


def figures(home: Path, most: int | None) -> dict[str, float]:
    """The best loss, runs, full-run equivalents and slot use of the sweep in ``home``; with
    ``most``, only runs at that many epochs count for the best (hyperband)."""
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "show", "last", "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    runs: list[dict[str, Any]] = json.loads(shown.stdout)["runs"]
    done = [r for r in runs if r["state"] == "succeeded" and "loss" in (r.get("metrics") or {})]
    full = done if most is None else [r for r in done if int(r["params"]["epochs"]) == most]
    epochs = sum(int(r["params"]["epochs"]) for r in runs) / most if most else len(runs)
    # The run stamps live only in the journal: read them straight from its file.
    with contextlib.closing(sqlite3.connect(home / "journal.sqlite")) as db:
        spans = db.execute("SELECT started_at, finished_at FROM runs").fetchall()
    return {
        "best": min(float(r["metrics"]["loss"]) for r in full),
        "runs": len(runs),
        "full": epochs,
        "busy": busy(spans),
    }


def ours(
    base: Path, kind: str, body: str, seeds: list[int], sleep: float, most: int
) -> Callable[[], Measure]:
    """One sweep per call, the next seed each time, in a fresh home (removed afterwards)."""
    upcoming = iter(seeds)

    def once() -> Measure:
        seed = next(upcoming)
        spec = write_spec(base, kind, body, seed, sleep, most)
        with scratch(base, prefix=f"home-{kind}-") as home:
            measured = run_measured(
                [sys.executable, "-m", "orchestrator", "run", str(spec), "--home", str(home),
                 "--concurrency", str(CONCURRENCY), "--json"],
                cwd=ROOT,
            )  # fmt: skip
            extra = figures(home, most if kind == "hyperband" else None)
        return Measure(measured.wall, measured.rss_kib, extra)

    return once


def peer(base: Path, n: int, seeds: list[int], sleep: float) -> Callable[[], Measure]:
    """Optuna's own TPE driving the script, one study per call with the next seed."""
    upcoming = iter(seeds)
    driver = base / "peer_optuna.py"
    driver.write_text(PEER_OPTUNA)

    def once() -> Measure:
        out = base / "peer.json"
        measured = run_measured(
            [sys.executable, str(driver), str(base / "branin.py"), str(sleep), str(n),
             str(next(upcoming)), str(out)]
        )  # fmt: skip
        result = json.loads(out.read_text())
        out.unlink()
        runs, spans = float(result["runs"]), [tuple(span) for span in result["spans"]]
        extra = {"best": result["best"], "runs": runs, "full": runs, "busy": busy(spans)}
        return Measure(measured.wall, measured.rss_kib, extra)

    return once


def rows(
    base: Path, n: int, seeds: list[int], sleep: float, most: int
) -> tuple[dict[str, Callable[[], Measure]], dict[str, str]]:
    """The rows that can run here, and why each other one cannot."""
    variants: dict[str, Callable[[], Measure]] = {}
    unavailable: dict[str, str] = {}
    for kind, (body, library) in settings(n, most).items():
        name = f"ours: {kind}" + (f" (R {most}, eta 3)" if kind == "hyperband" else "")
        why = missing("" if kind == "random" else f"orchestrator.search.{kind}", library)
        if why:
            unavailable[name] = why
        else:
            variants[name] = ours(base, kind, body, seeds, sleep, most)
    why = missing("optuna")
    if why:
        unavailable[PEER] = why
    else:
        variants[PEER] = peer(base, n, seeds, sleep)
    return variants, unavailable


def importing(module: str) -> Callable[[], Measure]:
    return lambda: run_measured([sys.executable, "-c", f"import {module}"])


def bench(n: int, seeds: list[int], sleep: float, most: int) -> None:
    with scratch(Path(tempfile.gettempdir()), prefix="bench-search-") as base:
        (base / "branin.py").write_text(BRANIN)
        variants, unavailable = rows(base, n, seeds, sleep, most)
        results = interleave(variants, len(seeds))
    available = [module for module in LIBRARIES if not missing(module)]
    imports = interleave({m: importing(m) for m in available}, len(seeds), progress=False)
    table = Table(
        f"Branin (optimum {BRANIN_MIN}), {sleep * 1000:.0f} ms a full run, concurrency "
        f"{CONCURRENCY}, N {n}: median over {len(seeds)} seed(s) {seeds}",
        ["", "runs", "full-run equiv.", "best (median)", "best (min..max)", "wall s (median)",
         "wall vs peer", "slots busy"],
        first_width=40,
    )  # fmt: skip
    baseline = results.get(PEER)
    for name, measures in results.items():
        bests = [m.extra["best"] for m in measures]
        table.add(
            name,
            f"{median([m.extra['runs'] for m in measures]):.0f}",
            f"{median([m.extra['full'] for m in measures]):.1f}",
            f"{median(bests):.3f}",
            f"{min(bests):.3f}..{max(bests):.3f}",
            f"{median([m.wall for m in measures]):.2f}",
            f"{ratio_median(measures, baseline):.2f}x" if baseline else "-",
            f"{median([m.extra['busy'] for m in measures]):.0%}",
        )
    for name, why in unavailable.items():
        table.add(name, *["-"] * 6, why)  # the last column: wide cells stretch only it
    table.add("reference: Branin's known optimum", "", "", f"{BRANIN_MIN:.3f}")
    table.print()
    walls = {module: median([m.wall for m in ms]) for module, ms in imports.items()}
    print(
        "of which importing its library (python -c 'import M', median): "
        + ", ".join(f"{module} {wall:.2f} s" for module, wall in walls.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N 12, R 9, one seed")
    parser.add_argument("--runs", type=int, help="N, a multiple of 4 (default 60)")
    parser.add_argument("--seeds", type=int, help="rounds, one seed each (default 5)")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds a full run sleeps")
    args = parser.parse_args()
    n = args.runs or (12 if args.quick else 60)
    if n < 4 or n % 4:
        parser.error("--runs must be a positive multiple of 4")
    count = args.seeds or (1 if args.quick else 5)
    bench(n, list(itertools.islice(itertools.count(1), count)), args.sleep, 9 if args.quick else 27)


if __name__ == "__main__":
    main()
