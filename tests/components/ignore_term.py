"""Ignore SIGTERM, say ready, then wait forever."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
sys.stdout.flush()
while True:
    time.sleep(60)
