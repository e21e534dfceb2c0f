"""An iterative tuner for the tests: proposes ``lr`` values halving around the best so far.

Takes Polyaxon's tuner inputs as ``--name=JSON`` arguments (``{{ params.X.as_arg }}``), checks
they match ``$ORCHESTRATOR_TUNER_INPUTS``, and answers with ``log_outputs(suggestions=...)``.
``--mode`` makes it misbehave in the ways the tests need; ``--calls`` names a file it appends
its iteration to (so a test can count its runs); ``--fifo`` one it writes its pids to.
"""

import json
import os
import subprocess
import sys
import time

from orchestrator.tracking import log_metrics, log_outputs

args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
matrix = json.loads(args["matrix"])
configs = json.loads(args["configs"])
metrics = json.loads(args["metrics"])
iteration = int(args["iteration"])
mode = args.get("mode", "halving")

with open(os.environ["ORCHESTRATOR_TUNER_INPUTS"]) as f:
    given = json.load(f)
if (given["configs"], given["metrics"], given["iteration"]) != (configs, metrics, iteration):
    sys.exit("the inputs file does not match the arguments")
if matrix.get("kind") != "iterative":
    sys.exit(f"not an iterative matrix: {matrix}")
if "calls" in args:
    with open(args["calls"], "a") as f:
        f.write(f"{iteration}\n")

print("thinking...")  # noise the orchestrator must skip
log_metrics(step=iteration, seen=len(configs))
log_outputs(note="an outputs line without suggestions")
if mode == "silent":
    sys.exit(0)
log_outputs(suggestions=[{"lr": 99.0}])  # replaced by the last line that sets suggestions

if mode == "fail":
    print("Traceback (most recent call last):\nValueError: no good lr", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(args["fifo"], "w") as f:
        f.write(json.dumps([os.getpid(), child.pid]))
    time.sleep(600)
if mode == "not-a-list":
    log_outputs(suggestions={"lr": 0.1})
elif mode == "bad-item":
    log_outputs(suggestions=[{"lr": 0.1}, 3])
elif mode == "unknown-key":
    log_outputs(suggestions=[{"momentum": 0.9}])
elif mode == "empty" and iteration > 0:
    log_outputs(suggestions=[])
elif iteration == 0:
    if configs:
        sys.exit("configs at iteration 0")
    log_outputs(suggestions=[{"lr": 0.5}])
else:
    best = min(zip(metrics, configs, strict=True), key=lambda pair: pair[0]["loss"])[1]["lr"]
    width = 0.4 / 2 ** (iteration - 1)
    proposals = [round(best - width, 6), round(best + width, 6)]
    log_outputs(suggestions=[{"lr": lr} for lr in proposals if lr > 0], iteration=iteration)
