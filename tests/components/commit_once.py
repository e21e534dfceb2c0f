"""A run for the fault-injection tests: work a little, then record that it ran, exactly when it
exits 0.

    commit_once.py MARKERS EVENTS INDEX TOKEN WORK_MS

Writes ``s INDEX`` to the EVENTS fifo when it starts and ``d INDEX`` when it is done (the test
times its kills on them), and appends ``INDEX RUN_ID`` to MARKERS. SIGTERM is blocked from
just before that line until ``os._exit(0)``: a SIGTERM in between waits, and the process exits
0 first, so a line in MARKERS means "this run exited 0" (only a SIGKILL could separate them,
and it comes half a second after a SIGTERM). TOKEN only marks the process as the test's. With
``COMMIT_ONCE_LONG=INDEX`` in its environment, the run of that index works 30 s instead: a run
sure to be alive whenever its orchestrator is killed.
"""

import os
import signal
import sys
import time


def event(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # nobody listens any more
    try:
        os.write(fd, text.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


markers, events, index, _token, work_ms = sys.argv[1:6]
event(events, f"s {index}\n")
long = os.environ.get("COMMIT_ONCE_LONG") == index
time.sleep(30 if long else int(work_ms) / 1000)  # the run's "work"
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
fd = os.open(markers, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{index} {os.environ['ORCHESTRATOR_RUN_ID']}\n".encode())
os.close(fd)
event(events, f"d {index}\n")
os._exit(0)
