import argparse
import logging
import os

import torch
from data import make_split
from model import MLP

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("main")


def main():
    parser = argparse.ArgumentParser(description="toy regression")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data")
    parser.add_argument("--hidden", type=int, default=16, help="hidden width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="where the model is saved")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = make_split(512)
    vx, vy = make_split(256, seed=99)
    model = MLP(args.hidden)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(1, args.epochs + 1):
        for i in range(0, len(x), 32):
            loss = torch.nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        log.info("epoch %d train_loss=%.4f", epoch, loss.item())
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(vx), vy).item()
        print("epoch {} | val_loss: {:.6f}".format(epoch, val))  # noqa: UP032 - the .format shape
    os.makedirs(os.path.dirname(args.checkpoint), exist_ok=True)
    torch.save(model.state_dict(), args.checkpoint)


if __name__ == "__main__":
    main()
