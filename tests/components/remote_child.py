"""A run for the Dask executor's tests: note this execution, say where it runs, then wait.

remote_child.py MODE MARKERS [FIFO]: appends its pid to MARKERS (one line per execution),
prints ``ready PID`` (and writes it to FIFO when given), then sleeps until killed. MODE
``wait`` dies of SIGTERM; ``ignore-term`` ignores it (only SIGKILL ends it).
"""

import os
import signal
import sys
import time

mode, markers = sys.argv[1], sys.argv[2]
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(markers, "a") as f:
    f.write(f"{os.getpid()}\n")
print(f"ready {os.getpid()}", flush=True)
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as fifo:
        fifo.write(f"{os.getpid()}\n")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.5)
