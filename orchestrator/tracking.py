"""Report metrics from a training script without an SDK: ``log_metrics(step=3, loss=0.31)``.

It prints one JSON line, ``{"metrics": {"loss": 0.31}, "step": 3}``, which the orchestrator
reads from the run's stdout. Standard library only, so any script can import it, or copy it.
"""

from __future__ import annotations

import json
import math
import sys

__all__ = ["log_metrics"]


def log_metrics(step: int | None = None, **values: float) -> None:
    """Print a metrics line for the orchestrator (flushed at once, so it arrives live)."""
    clean: dict[str, float] = {}
    for name, value in values.items():
        number = float(value)
        if not math.isfinite(number):
            continue
        clean[name] = number
    record: dict[str, object] = {"metrics": clean}
    if step is not None:
        record["step"] = int(step)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
