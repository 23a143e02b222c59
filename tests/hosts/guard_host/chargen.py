"""Fit a tiny one-hidden-layer model to a fixed curve (pure Python, no torch): a main-guard script."""

import argparse
import json
import math
import os
import random

DATA_SEED = 1234


class NewGELU:
    """The activation (tanh approximation of GELU)."""

    def forward(self, x):
        return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Model:
    def __init__(self, hidden, seed):
        rng = random.Random(seed)
        self.act = NewGELU()
        self.w_in = [rng.gauss(0.0, 1.0) for _ in range(hidden)]
        self.w_out = [0.0] * hidden

    def features(self, x):
        return [self.act.forward(w * x) for w in self.w_in]

    def __call__(self, x):
        return sum(a * b for a, b in zip(self.w_out, self.features(x)))


def make_split(n, seed):
    rng = random.Random(seed)
    xs = [rng.uniform(-2.0, 2.0) for _ in range(n)]
    return [(x, math.sin(x) + rng.gauss(0.0, 0.05)) for x in xs]


def evaluate(model, data):
    return sum((model(x) - y) ** 2 for x, y in data) / len(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="tiny curve fit")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="out", help="where the model is saved")
    args = parser.parse_args()
    train, val = make_split(256, DATA_SEED), make_split(128, DATA_SEED + 1)
    model = Model(args.hidden, args.seed)
    rng = random.Random(args.seed)
    for step in range(1, args.steps + 1):
        x, y = train[rng.randrange(len(train))]
        feats = model.features(x)
        err = model(x) - y
        model.w_out = [w - args.lr * err * f for w, f in zip(model.w_out, feats)]
        if step % 100 == 0 or step == args.steps:
            print(f"step {step} val_loss {evaluate(model, val):.6f}", flush=True)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(os.path.join(args.work_dir, "model.json"), "w") as fh:
        json.dump({"w_in": model.w_in, "w_out": model.w_out, "lr": args.lr}, fh)
