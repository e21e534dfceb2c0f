"""Write output in the shape named by argv[1]."""

import json
import os
import sys

mode = sys.argv[1]
out = sys.stdout.buffer
if mode == "bigline":
    block = b"x" * (1024 * 1024)
    for _ in range(10):
        out.write(block)
    out.flush()
elif mode == "binary":
    out.write(b"before \xff\xfe after\n")
    out.flush()
elif mode == "lines":
    for i in range(5000):
        print(f"out {i}")
        print(f"err {i}", file=sys.stderr)
elif mode == "metrics":
    for step in range(1, 4):
        print(json.dumps({"metrics": {"loss": 1.0 / step, "accuracy": 0.3 * step}, "step": step}))
    print('{"metrics": "not a dict"}')
    print("{not json")
elif mode == "env":
    print(
        json.dumps(
            {
                k: os.environ.get(k)
                for k in (
                    "ORCHESTRATOR_RUN_ID",
                    "ORCHESTRATOR_RUN_DIR",
                    "ORCHESTRATOR_OUTPUTS_PATH",
                    "MY_VAR",
                )
            }
        )
    )
    print(os.getcwd())
elif mode == "exit":
    print("failing now", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
elif mode == "selfkill":
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
