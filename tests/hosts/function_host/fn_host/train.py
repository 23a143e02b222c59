"""Train a tiny MLP regressor; the API is the typed function `main(...)`.

    from fn_host.train import main
    main(lr=0.03, steps=100)  # -> {"eval/loss": ..., "step": ..., "checkpoint": ...}

There is no command line. Metrics go to wandb (offline unless WANDB_MODE says
otherwise) and to stdout as `eval/loss=<v>`; the checkpoint is an HF-style
folder `<output_dir>/checkpoint-<step>/` holding model.pt and config.json.
"""

import json
import os
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from fn_host.data import IN_FEATURES, build_train_loader, build_val_loader

# Stop training this long before AR_DEADLINE: evaluating, saving, wandb's
# finish() and torch's interpreter shutdown must fit before the deadline.
DEADLINE_MARGIN_S = 3.0


def seconds_left() -> float:
    """Seconds until the runner's AR_DEADLINE (Unix time); inf when unset."""
    deadline = os.environ.get("AR_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def evaluate(model: nn.Module, loader) -> float:
    """Mean squared error over the whole validation set."""
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += nn.functional.mse_loss(model(x), y, reduction="sum").item()
            count += len(y)
    return total / count


def main(
    lr: float = 0.01,
    steps: int = 60,
    hidden: int = 32,
    seed: int = 0,
    output_dir: str = "out",
    use_wandb: bool = True,
    resume_from_checkpoint: Optional[str] = None,
) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    config = {"lr": lr, "steps": steps, "hidden": hidden, "seed": seed}
    run = None
    if use_wandb:
        import wandb  # only when asked: its start-up costs about a second

        run = wandb.init(project="fn-host", config=config, mode=os.environ.get("WANDB_MODE", "offline"))

    model = nn.Sequential(nn.Linear(IN_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    start_step = 0
    if resume_from_checkpoint:
        state = torch.load(Path(resume_from_checkpoint) / "model.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = state["step"]
        print(f"resumed_from={resume_from_checkpoint}", flush=True)

    train_loader = build_train_loader(batch_size=32, seed=seed + start_step)
    val_loader = build_val_loader(batch_size=64)
    step = start_step
    batches = iter(train_loader)
    while step < start_step + steps:
        if seconds_left() < DEADLINE_MARGIN_S:
            print(f"deadline near: stopping early after step {step}", flush=True)
            break
        try:
            x, y = next(batches)
        except StopIteration:  # next epoch
            batches = iter(train_loader)
            x, y = next(batches)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if run is not None:
            run.log({"train/loss": loss.item()}, step=step)

    eval_loss = evaluate(model, val_loader)
    print(f"step={step} eval/loss={eval_loss:.6f}", flush=True)
    if run is not None:
        run.log({"eval/loss": eval_loss}, step=step)
        run.summary["eval/loss"] = eval_loss
        run.finish()

    ckpt_dir = Path(output_dir) / f"checkpoint-{step}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, ckpt_dir / "model.pt")
    (ckpt_dir / "config.json").write_text(json.dumps({**config, "step": step}, indent=2))
    return {"eval/loss": eval_loss, "step": step, "checkpoint": str(ckpt_dir)}
