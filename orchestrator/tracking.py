"""Report metrics from a training script without an SDK: ``log_metrics(step=3, loss=0.31)``.

It prints one JSON line, ``{"metrics": {"loss": 0.31}, "step": 3}``, which the orchestrator
reads from the run's stdout. ``log_outputs(suggestions=[...])`` prints
``{"outputs": {"suggestions": [...]}}`` the same way (an iterative tuner's answer, as
Polyaxon's ``RunClient.log_outputs``). Standard library only, so any script can import it, or
copy it.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

__all__ = ["log_metrics", "log_outputs"]


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


def log_outputs(**values: Any) -> None:
    """Print an outputs line for the orchestrator: any JSON values (NumPy scalars and arrays
    become numbers and lists). Later lines update earlier ones, key by key, as Polyaxon's
    ``log_outputs`` does; a value that is not JSON (NaN included) raises here, in the script,
    rather than reaching the orchestrator as something it cannot read."""
    line = json.dumps({"outputs": values}, allow_nan=False, default=_plain)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _plain(value: Any) -> Any:
    """NumPy's scalars and arrays as Python numbers and lists (without importing NumPy)."""
    for name in ("tolist", "item"):
        method = getattr(value, name, None)
        if callable(method):
            return method()
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")
