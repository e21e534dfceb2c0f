"""Start a grandchild that sleeps for a long time, write its pid, then wait or exit."""

import subprocess
import sys
import time

pid_file, mode = sys.argv[1], sys.argv[2]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(pid_file, "w") as f:
    f.write(str(child.pid))
print("ready", flush=True)
if mode == "wait":
    while True:
        time.sleep(60)
