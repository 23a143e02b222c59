"""Train a tiny MLP regressor on synthetic data, configured by Hydra.

    python -m hydra_app.train optimizer=adam model=wide trainer.steps=100

Every run writes into Hydra's own output folder `outputs/<date>/<time>/`:
TensorBoard events under `tb/` (scalar `eval/loss`) and the checkpoint
`checkpoints/last.pt`. Paths come from HydraConfig, so they are right whether
or not Hydra changes the working directory (hydra.job.chdir).
"""

import os
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.tensorboard import SummaryWriter

IN_FEATURES = 8
DATA_SEED = 1234  # the dataset is fixed; trainer.seed only changes init and batches
# Stop training this long before AR_DEADLINE: evaluating, closing the writer,
# saving and torch's interpreter shutdown (0.5-1 s) must fit before it.
DEADLINE_MARGIN_S = 2.0


def make_data(n: int, generator: torch.Generator) -> tuple:
    """Inputs and targets of a fixed random teacher network plus a little noise."""
    teacher = torch.Generator().manual_seed(DATA_SEED)
    w1 = torch.randn(IN_FEATURES, 16, generator=teacher) / IN_FEATURES**0.5
    w2 = torch.randn(16, 1, generator=teacher) / 2
    x = torch.randn(n, IN_FEATURES, generator=generator)
    y = torch.sin(x @ w1) @ w2 + 0.05 * torch.randn(n, 1, generator=generator)
    return x, y


def seconds_left() -> float:
    """Seconds until the runner's AR_DEADLINE (Unix time); inf when unset."""
    deadline = os.environ.get("AR_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def build_optimizer(cfg: DictConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer.name == "adam":
        return torch.optim.Adam(params, lr=cfg.optimizer.lr)
    return torch.optim.SGD(params, lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(cfg.trainer.seed)
    out_dir = Path(HydraConfig.get().runtime.output_dir)

    data_gen = torch.Generator().manual_seed(DATA_SEED)
    x_train, y_train = make_data(1024, data_gen)
    x_val, y_val = make_data(512, data_gen)

    model = nn.Sequential(nn.Linear(IN_FEATURES, cfg.model.hidden), nn.Tanh(), nn.Linear(cfg.model.hidden, 1))
    optimizer = build_optimizer(cfg, model.parameters())
    start_step = 0
    if cfg.trainer.resume_from_checkpoint:
        # to_absolute_path: relative to where the user launched, even after a chdir
        ckpt_path = to_absolute_path(cfg.trainer.resume_from_checkpoint)
        state = torch.load(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = state["step"]
        print(f"resumed_from={ckpt_path}", flush=True)

    def evaluate() -> float:
        with torch.no_grad():
            return nn.functional.mse_loss(model(x_val), y_val).item()

    writer = SummaryWriter(log_dir=str(out_dir / "tb"))
    batch_gen = torch.Generator().manual_seed(cfg.trainer.seed + start_step)
    last_step = start_step + cfg.trainer.steps
    step = start_step
    for step in range(start_step + 1, last_step + 1):
        if seconds_left() < DEADLINE_MARGIN_S:
            step -= 1
            print(f"deadline near: stopping early after step {step}", flush=True)
            break
        idx = torch.randint(0, len(x_train), (cfg.trainer.batch_size,), generator=batch_gen)
        loss = nn.functional.mse_loss(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        writer.add_scalar("train/loss", loss.item(), step)
        if step % cfg.trainer.eval_every == 0 and step < last_step:
            eval_loss = evaluate()
            writer.add_scalar("eval/loss", eval_loss, step)
            print(f"step={step} eval/loss={eval_loss:.6f}", flush=True)

    eval_loss = evaluate()
    writer.add_scalar("eval/loss", eval_loss, step)
    writer.close()  # flushes the events file (it buffers up to 2 minutes)
    print(f"step={step} eval/loss={eval_loss:.6f}", flush=True)

    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": OmegaConf.to_container(cfg),
    }
    torch.save(state, out_dir / "checkpoints" / "last.pt")
    return eval_loss


if __name__ == "__main__":
    main()
