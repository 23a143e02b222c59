"""Classify synthetic points; launched with torchrun (each rank trains, rank 0 reports)."""

import argparse
import os

import torch

from pkg.model import build


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--steps", type=int, default=80, help="optimizer steps")
    parser.add_argument("--hidden", type=int, default=16, help="hidden width")
    parser.add_argument("--out_dir", default="checkpoints", help="where last.pt goes")
    parser.add_argument("--resume", default=None, help="checkpoint to start from")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(600, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = build(args.hidden)
    if args.resume:
        model.load_state_dict(torch.load(args.resume))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for _ in range(args.steps):
        loss = torch.nn.functional.cross_entropy(model(x[:500]), y[:500])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        eval_loss = torch.nn.functional.cross_entropy(model(x[500:]), y[500:]).item()
    if rank == 0:
        print("step %d eval_loss %.6f" % (args.steps, eval_loss))  # noqa: UP031 - the %-format shape
        os.makedirs(args.out_dir, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(args.out_dir, "last.pt"))


if __name__ == "__main__":
    main()
