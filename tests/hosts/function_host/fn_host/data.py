"""Synthetic regression data and the loaders the trainer uses.

The dataset is fixed (DATA_SEED); only the train loader's shuffling order
depends on the `seed` argument.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES = 8
DATA_SEED = 1234


def _make_split(n: int, offset: int) -> TensorDataset:
    """Inputs and targets of a fixed random teacher network plus a little noise."""
    teacher = torch.Generator().manual_seed(DATA_SEED)
    w1 = torch.randn(IN_FEATURES, 16, generator=teacher) / IN_FEATURES**0.5
    w2 = torch.randn(16, 1, generator=teacher) / 2
    gen = torch.Generator().manual_seed(DATA_SEED + offset)  # distinct per split
    x = torch.randn(n, IN_FEATURES, generator=gen)
    y = torch.sin(x @ w1) @ w2 + 0.05 * torch.randn(n, 1, generator=gen)
    return TensorDataset(x, y)


def build_train_loader(batch_size: int = 32, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_make_split(1024, 1), batch_size=batch_size, shuffle=True, generator=generator)


def build_val_loader(batch_size: int = 64) -> DataLoader:
    return DataLoader(_make_split(512, 2), batch_size=batch_size, shuffle=False)
