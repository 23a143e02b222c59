"""The shared training loop and command line of every entry point."""

import argparse
import os
import time

import torch
from torch import nn

from eval_host.data import train_split
from eval_host.model import Net

DEADLINE_MARGIN_S = 2.0  # stop this long before AR_DEADLINE: evaluate + save must fit


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="train a tiny regressor")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="checkpoints")
    return parser.parse_args(argv)


def fit(args: argparse.Namespace) -> Net:
    """SGD with momentum on the train split, batches of 64; stops early near AR_DEADLINE."""
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = Net(hidden=args.hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    x, y = train_split()
    deadline = float(os.environ.get("AR_DEADLINE") or "inf")
    for step in range(args.steps):
        if deadline - time.time() < DEADLINE_MARGIN_S:
            print(f"deadline near: stopping early after step {step}", flush=True)
            break
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
