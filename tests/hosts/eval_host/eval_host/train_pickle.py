"""Train; save the whole model object (checkpoints/model.pt)."""

import os

import torch

from eval_host.evaluation import evaluate_model
from eval_host.fit import fit, parse_args


def main() -> None:
    args = parse_args()
    model = fit(args)
    val_loss = evaluate_model(model)
    print(f"step={args.steps} val_loss={val_loss:.6f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    torch.save(model, os.path.join(args.out, "model.pt"))


if __name__ == "__main__":
    main()
