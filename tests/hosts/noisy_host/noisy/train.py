"""Training stand-in: the validation loss is a known true value plus seeded Gaussian noise.

Tests and the noise bench sample values through `val_loss` (the same function the
script prints), so a simulated loop and a real run of this host agree exactly.
"""

import argparse
import os
import random

TRUE_LOSS = 1.0  # the loss of the default configuration, noise aside
NOISE = 0.05  # standard deviation of the run-to-run noise


def true_loss(lr: float = 0.01, effect: float = 0.0) -> float:
    """The noise-free loss: best at lr 0.01, `effect` lower when a change truly helps."""
    return TRUE_LOSS + 10.0 * abs(lr - 0.01) - effect


def val_loss(seed: int, lr: float = 0.01, effect: float = 0.0, noise: float = NOISE) -> float:
    return true_loss(lr, effect) + random.Random(seed).gauss(0.0, noise)


def main():
    parser = argparse.ArgumentParser(description="noisy stand-in training")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--effect", type=float, default=0.0, help="true improvement of the loss")
    parser.add_argument("--noise", type=float, default=NOISE, help="standard deviation of the noise")
    parser.add_argument("--out_dir", default="checkpoints")
    args = parser.parse_args()
    loss = val_loss(args.seed, args.lr, args.effect, args.noise)
    for step in range(1, args.steps + 1):  # the "training": cheap, but the shape of a loop
        if step % 50 == 0 and step < args.steps:
            print(f"step={step} train_loss={loss + 1.0 / step:.6f}")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "model.txt"), "w") as fh:
        fh.write(f"lr={args.lr} seed={args.seed} effect={args.effect}\n")
    print(f"step={args.steps} val_loss={loss:.6f}")


if __name__ == "__main__":
    main()
