"""Launcher: `python -m lit_host.cli --lr=0.03 --max_steps=100`, or call run(...).

The command line is read fire-style: every `--name=value` (or `--name value`)
becomes a keyword argument of `run`, the value parsed as a Python literal when
it is one (so `--lr=1e-3` is a float and `--ckpt_path=None` is None).
"""

import ast
import inspect
import os
import sys
import time
import warnings
from typing import Optional

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from lit_host.model import LitRegressor, RegressionData

# Stop training this long before AR_DEADLINE: the last validation, the
# checkpoint and the Trainer and interpreter shutdown (about 1.5 s) must fit.
DEADLINE_MARGIN_S = 3.0


class DeadlineStop(L.Callback):
    """Ask the Trainer to stop when the runner's AR_DEADLINE is near."""

    def on_train_batch_end(self, trainer, *args) -> None:
        deadline = os.environ.get("AR_DEADLINE")
        if deadline and float(deadline) - time.time() < DEADLINE_MARGIN_S and not trainer.should_stop:
            print(f"deadline near: stopping early after step {trainer.global_step}", flush=True)
            trainer.should_stop = True


def run(
    lr: float = 0.01,
    max_steps: int = 60,
    hidden: int = 32,
    batch_size: int = 32,
    seed: int = 0,
    default_root_dir: str = ".",
    ckpt_path: Optional[str] = None,
) -> float:
    """Train, validate, checkpoint under lightning_logs/version_*/; return val_loss."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    L.seed_everything(seed)
    import torch

    torch.set_num_threads(1)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        logger=TensorBoardLogger(save_dir=default_root_dir),
        default_root_dir=default_root_dir,
        callbacks=[DeadlineStop()],
    )
    model, data = LitRegressor(hidden=hidden, lr=lr), RegressionData(batch_size=batch_size)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    # fit validates only at epoch ends; max_steps (or the deadline) usually
    # stops mid-epoch, so validate the final weights explicitly.
    trainer.validate(model, datamodule=data, verbose=False)
    return trainer.callback_metrics["val_loss"].item()


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: keep it as a string, like fire does


def cli(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    accepted = inspect.signature(run).parameters
    kwargs, i = {}, 0
    while i < len(argv):
        name, sep, value = argv[i].lstrip("-").partition("=")
        if not argv[i].startswith("--") or name not in accepted:
            raise SystemExit(f"lit_host.cli: unknown argument {argv[i]!r}; accepted: {', '.join(accepted)}")
        if not sep:  # `--name value`
            i += 1
            value = argv[i]
        kwargs[name] = _parse_value(value)
        i += 1
    run(**kwargs)


if __name__ == "__main__":
    cli()
