"""A small stand-in for Polyaxon's quick-start model: a one-hidden-layer network, stdlib only.

It trains a binary classifier on a generated, noisy two-moons-like data set with the
quick-start's hyperparameters (learning rate, dropout, activations, optimizer, epochs), reports
``loss`` and ``accuracy`` after every epoch as a metrics line, and takes about a second a run.
"""

from __future__ import annotations

import argparse
import math
import random

# Runs get the orchestrator's own interpreter as `python`/`python3`, so this always imports.
from orchestrator.tracking import log_metrics


def activation(name: str) -> tuple:
    if name == "sigmoid":

        def f(x: float) -> float:
            return 1.0 / (1.0 + math.exp(-max(min(x, 60.0), -60.0)))

        return f, lambda y: y * (1.0 - y)
    if name == "tanh":
        return math.tanh, lambda y: 1.0 - y * y
    return (lambda x: x if x > 0 else 0.0), (lambda y: 1.0 if y > 0 else 0.0)


def make_data(n: int, rng: random.Random) -> list[tuple[list[float], int]]:
    data = []
    for _ in range(n):
        label = rng.random() < 0.5
        angle = rng.uniform(0, math.pi)
        x = math.cos(angle) + (1.0 if label else 0.0) + rng.gauss(0, 0.3)
        y = math.sin(angle) * (-1.0 if label else 1.0) + (0.5 if label else 0.0) + rng.gauss(0, 0.3)
        data.append(([x, y, x * y, x * x - y * y], int(label)))
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conv1_size", type=int, default=32)
    parser.add_argument("--conv2_size", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--hidden1_size", type=int, default=500)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--conv_activation", default="relu")
    parser.add_argument("--dense_activation", default="relu")
    parser.add_argument("--learning_rate", type=float, default=0.001)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(0)
    train, test = make_data(3500, rng), make_data(500, rng)
    hidden = max(4, min(args.hidden1_size // 40, 16))
    act, dact = activation(args.conv_activation)
    w1 = [[rng.gauss(0, 0.5) for _ in range(4)] for _ in range(hidden)]
    b1 = [0.0] * hidden
    w2 = [rng.gauss(0, 0.5) for _ in range(hidden)]
    b2 = 0.0
    # Adam keeps running moments; SGD (or anything else) uses plain steps.
    adam = args.optimizer.lower() == "adam"
    lr = args.learning_rate * (1.0 if adam else 10.0)
    m1 = [[0.0] * 4 for _ in range(hidden)]
    v1 = [[0.0] * 4 for _ in range(hidden)]
    m2, v2 = [0.0] * hidden, [0.0] * hidden
    t = 0

    def step(g: float, m: list, v: list, i: int) -> float:
        if not adam:
            return lr * g
        m[i] = 0.9 * m[i] + 0.1 * g
        v[i] = 0.999 * v[i] + 0.001 * g * g
        return lr * (m[i] / (1 - 0.9**t)) / (math.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)

    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        for features, label in train:
            t += 1
            h = [act(sum(w * x for w, x in zip(row, features)) + b) for row, b in zip(w1, b1)]
            keep = [0.0 if rng.random() < args.dropout else 1.0 / (1 - args.dropout) for _ in h]
            hd = [a * k for a, k in zip(h, keep)]
            z = sum(w * a for w, a in zip(w2, hd)) + b2
            p = 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))
            dz = p - label
            for j in range(hidden):
                dh = dz * w2[j] * keep[j] * dact(h[j])
                w2[j] -= step(dz * hd[j], m2, v2, j)
                for k in range(4):
                    w1[j][k] -= step(dh * features[k], m1[j], v1[j], k)
                b1[j] -= lr * dh
            b2 -= lr * dz
        loss = correct = 0.0
        for features, label in test:
            h = [act(sum(w * x for w, x in zip(row, features)) + b) for row, b in zip(w1, b1)]
            z = sum(w * a for w, a in zip(w2, h)) + b2
            p = min(max(1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0))), 1e-9), 1 - 1e-9)
            loss -= label * math.log(p) + (1 - label) * math.log(1 - p)
            correct += (p >= 0.5) == bool(label)
        log_metrics(
            step=epoch, loss=round(loss / len(test), 6), accuracy=round(correct / len(test), 6)
        )


if __name__ == "__main__":
    main()
