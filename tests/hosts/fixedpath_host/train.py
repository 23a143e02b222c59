"""A small regression model that always saves to the same hard-coded path."""

import argparse
import os

import torch
from torch import nn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate")
    parser.add_argument("--steps", type=int, default=40, help="training steps")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(512, 4, generator=g)
    y = (x.sum(1, keepdim=True) > 0).float()
    model = nn.Sequential(nn.Linear(4, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _step in range(args.steps):
        loss = loss_fn(model(x[:400]), y[:400])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val_loss = loss_fn(model(x[400:]), y[400:]).item()
    print(f"step {args.steps} val_loss {val_loss:.6f}")
    os.makedirs("ckpt", exist_ok=True)
    torch.save(model.state_dict(), "ckpt/model.bin")


if __name__ == "__main__":
    main()
