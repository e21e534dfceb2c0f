"""Training step of the example pipeline: logistic regression on the prepared data.

Reads the CSV the prepare step wrote (its path arrives as ``--data``), trains with the
sweep's learning rate and epochs, and reports ``loss`` and ``accuracy`` after every epoch.
"""

from __future__ import annotations

import argparse
import math

from orchestrator.tracking import log_metrics


def features(x: float, y: float) -> list[float]:
    return [1.0, x, y, x * y, x * x - y * y]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with open(args.data) as data:
        for line in data:
            x, y, label = line.split(",")
            rows.append((features(float(x), float(y)), int(label)))
    split = len(rows) * 4 // 5
    train, test = rows[:split], rows[split:]
    weights = [0.0] * len(train[0][0])
    for epoch in range(1, args.epochs + 1):
        loss = 0.0
        for xs, label in train:
            z = sum(w * x for w, x in zip(weights, xs))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))
            loss -= math.log(max(p if label else 1.0 - p, 1e-12))
            weights = [w - args.learning_rate * (p - label) * x for w, x in zip(weights, xs)]
        hits = sum(
            (sum(w * x for w, x in zip(weights, xs)) > 0) == bool(label) for xs, label in test
        )
        log_metrics(step=epoch, loss=loss / len(train), accuracy=hits / len(test))


if __name__ == "__main__":
    main()
