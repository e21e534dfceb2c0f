"""The first execution kills its own Dask worker (SIGKILL), as a crashed node would; a later
one exits 0. Each execution appends a line to MARKERS.

kill_my_worker.py MARKERS
"""

import os
import signal
import sys
import time

markers = sys.argv[1]
with open(markers, "a+") as f:
    f.seek(0)
    first = not f.read()
    f.write(f"{os.getpid()}\n")
if first:
    with open(f"/proc/{os.getppid()}/stat") as stat:  # worker -> run supervisor -> this
        worker = int(stat.read().rsplit(")", 1)[1].split()[1])
    os.kill(worker, signal.SIGKILL)
    time.sleep(60)  # until the supervisor, seeing its worker gone, stops this
