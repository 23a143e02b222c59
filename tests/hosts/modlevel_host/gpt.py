"""A module-level training script: constants at the top, then data, classes and the loop (pure Python)."""

import json
import math
import os
import random

# hyperparameters
n_hidden = 8
learning_rate = 0.05
max_iters = 200
seed = 1337
# ------------

random.seed(seed)
data = [(x / 50.0, math.sin(x / 50.0)) for x in range(-100, 100)]
val_data = data[1::4]


class FeedForward:
    """The hidden layer's activation."""

    def forward(self, x):
        return math.tanh(x)


class Model:
    def __init__(self):
        self.ff = FeedForward()
        self.w_in = [random.gauss(0.0, 1.0) for _ in range(n_hidden)]
        self.w_out = [0.0] * n_hidden

    def features(self, x):
        return [self.ff.forward(w * x) for w in self.w_in]

    def __call__(self, x):
        return sum(a * b for a, b in zip(self.w_out, self.features(x)))


model = Model()
for _step in range(1, max_iters + 1):
    x, y = random.choice(data)
    feats = model.features(x)
    err = model(x) - y
    model.w_out = [w - learning_rate * err * f for w, f in zip(model.w_out, feats)]
val = sum((model(x) - y) ** 2 for x, y in val_data) / len(val_data)
print(f"step {max_iters}: val loss {val:.6f}", flush=True)
os.makedirs("ckpt", exist_ok=True)
with open("ckpt/model.json", "w") as fh:  # a fixed path: every run writes the same file
    json.dump({"w_in": model.w_in, "w_out": model.w_out, "learning_rate": learning_rate}, fh)
