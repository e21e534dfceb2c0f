"""Prepare step of the example pipeline: write a data set once, for every training run.

Writes ``samples`` noisy two-moons points as CSV into this run's outputs folder and reports
the file's path as the output ``data``, which the sweep's runs receive as a param.
"""

from __future__ import annotations

import argparse
import math
import os
import random
from pathlib import Path

from orchestrator.tracking import log_outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    target = Path(os.environ.get("ORCHESTRATOR_OUTPUTS_PATH", ".")) / "moons.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as out:
        for _ in range(args.samples):
            label = rng.random() < 0.5
            angle = rng.uniform(0, math.pi)
            x = math.cos(angle) + (1.0 if label else 0.0) + rng.gauss(0, 0.3)
            y = math.sin(angle) * (-1.0 if label else 1.0) + (0.5 if label else 0.0)
            out.write(f"{x:.5f},{y + rng.gauss(0, 0.3):.5f},{int(label)}\n")
    print(f"wrote {args.samples} samples to {target}")
    log_outputs(data=str(target))


if __name__ == "__main__":
    main()
