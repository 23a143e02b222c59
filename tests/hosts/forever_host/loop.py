"""Train until told to stop: the step limit defaults to -1, meaning forever (pure Python)."""

import argparse
import time

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_steps", type=int, default=-1, help="-1: train forever")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    loss, step = 1.0, 0
    while args.max_steps < 0 or step < args.max_steps:
        step += 1
        loss *= 1.0 - args.lr / 10
        if step % 100 == 0:
            print(f"step {step} loss {loss:.6f}", flush=True)
        time.sleep(0.001)
    print(f"step {step} val_loss {loss:.6f}", flush=True)
