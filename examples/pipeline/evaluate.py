"""Evaluation step of the example pipeline: report the best runs the join picked.

Receives, in the same order (best first), the learning rates and accuracies of the sweep's
best runs, prints them as a table and reports the best accuracy as the output ``best``.
"""

from __future__ import annotations

import argparse
import json

from orchestrator.tracking import log_outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning_rates", type=json.loads, required=True)
    parser.add_argument("--accuracies", type=json.loads, required=True)
    args = parser.parse_args()
    print(f"{'rank':>4}  {'learning_rate':>13}  {'accuracy':>8}")
    for rank, (lr, accuracy) in enumerate(zip(args.learning_rates, args.accuracies), 1):
        print(f"{rank:>4}  {lr:>13g}  {accuracy:>8.3f}")
    log_outputs(best=max(args.accuracies))


if __name__ == "__main__":
    main()
