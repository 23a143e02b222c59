"""The LightningModule and DataModule: a small MLP fit to a fixed teacher net."""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES = 8
DATA_SEED = 1234  # the dataset is fixed; the run's seed only changes init and order


def _make_split(n: int, offset: int) -> TensorDataset:
    """Inputs and targets of a fixed random teacher network plus a little noise."""
    teacher = torch.Generator().manual_seed(DATA_SEED)
    w1 = torch.randn(IN_FEATURES, 16, generator=teacher) / IN_FEATURES**0.5
    w2 = torch.randn(16, 1, generator=teacher) / 2
    gen = torch.Generator().manual_seed(DATA_SEED + offset)
    x = torch.randn(n, IN_FEATURES, generator=gen)
    y = torch.sin(x @ w1) @ w2 + 0.05 * torch.randn(n, 1, generator=gen)
    return TensorDataset(x, y)


class RegressionData(L.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        self.train_set, self.val_set = _make_split(1024, 1), _make_split(512, 2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)


class LitRegressor(L.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(IN_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss)
        return loss

    def on_validation_epoch_end(self) -> None:
        print(f"step={self.global_step} val_loss={self.trainer.callback_metrics['val_loss'].item():.6f}", flush=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
