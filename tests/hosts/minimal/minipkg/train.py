"""A stand-in training script: the loss is a pure function of its arguments, so tests are exact."""

import argparse
import os
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--save", default="", help="torch-free checkpoint: write bytes to this path")
    args = parser.parse_args()
    time.sleep(args.sleep)
    if args.save:
        os.makedirs(os.path.dirname(args.save) or ".", exist_ok=True)
        with open(args.save, "w") as fh:
            fh.write(f"lr={args.lr}\n")
    print(f"eval/loss={abs(args.lr - 0.05)}")


if __name__ == "__main__":
    main()
