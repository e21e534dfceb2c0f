"""Append 'start end' wall-clock stamps to a file, holding the slot for a moment in between."""

import sys
import time

path, hold = sys.argv[1], float(sys.argv[2])
start = time.time()
time.sleep(hold)
with open(path, "a") as f:
    f.write(f"{start} {time.time()}\n")
