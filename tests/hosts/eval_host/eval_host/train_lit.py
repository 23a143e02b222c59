"""Train with Lightning; save checkpoints/model.ckpt (evaluated by the project's evaluate_model)."""

import os

import lightning as L
import torch

from eval_host.evaluation import evaluate_model
from eval_host.fit import parse_args
from eval_host.lit import LitNet, RegressionData


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = LitNet(hidden=args.hidden, lr=args.lr)
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=RegressionData())
    val_loss = evaluate_model(model)
    print(f"step={args.steps} val_loss={val_loss:.6f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    trainer.save_checkpoint(os.path.join(args.out, "model.ckpt"))


if __name__ == "__main__":
    main()
