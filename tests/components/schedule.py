"""Report ``metric`` values on a schedule: one per step, ``pause`` seconds apart, then exit.

schedule.py METRIC V1,V2,... PAUSE [EXIT_CODE]
"""

import json
import sys
import time

metric, values, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
code = int(sys.argv[4]) if len(sys.argv) > 4 else 0
for step, value in enumerate(values.split(",") if values else [], start=1):
    if step > 1:
        time.sleep(pause)
    print(json.dumps({"metrics": {metric: float(value)}, "step": step}), flush=True)
sys.exit(code)
