"""A run for the search tests: report ``loss = (x - 0.3)^2 + 1/epochs``, then say it is done.

    quadratic.py X EPOCHS EVENTS

Writes ``d 0`` to the EVENTS fifo when it is done (the test times a kill -9 on it), then
appends ``X EPOCHS`` to ``$QUADRATIC_MARKERS`` (when set) with SIGTERM blocked until it has
exited 0, so a line there means "this run exited 0" (as tests/components/commit_once.py).
With ``$QUADRATIC_STAMPS`` set, it holds its slot 20 ms and appends ``START END X EPOCHS``
(wall clock) there.
"""

import json
import os
import signal
import sys
import time

start = time.time()
x, epochs, events = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
stamps = os.environ.get("QUADRATIC_STAMPS")
if stamps:
    time.sleep(0.02)
    with open(stamps, "a") as out:
        out.write(f"{start} {time.time()} {x} {epochs}\n")
print(json.dumps({"metrics": {"loss": (x - 0.3) ** 2 + 1.0 / epochs}}), flush=True)
try:
    fd = os.open(events, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"d 0\n")
    os.close(fd)
except OSError:
    pass  # nobody listens
markers = os.environ.get("QUADRATIC_MARKERS")
if markers:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with open(markers, "a") as out:
        out.write(f"{x} {epochs}\n")
    os._exit(0)
