"""Synthetic regression data: a fixed teacher network plus a little noise (DATA_SEED fixed)."""

import torch

IN_FEATURES = 8
DATA_SEED = 1234


def make_split(n: int, offset: int) -> tuple:
    """(x, y) tensors of one split; the same split on every call."""
    teacher = torch.Generator().manual_seed(DATA_SEED)
    w1 = torch.randn(IN_FEATURES, 16, generator=teacher) / IN_FEATURES**0.5
    w2 = torch.randn(16, 1, generator=teacher) / 2
    gen = torch.Generator().manual_seed(DATA_SEED + offset)  # distinct per split
    x = torch.randn(n, IN_FEATURES, generator=gen)
    y = torch.sin(x @ w1) @ w2 + 0.05 * torch.randn(n, 1, generator=gen)
    return x, y


def train_split() -> tuple:
    return make_split(1024, 1)


def val_split() -> tuple:
    return make_split(512, 2)


def test_split() -> tuple:
    """Never seen by training: the hidden holdout."""
    return make_split(512, 3)
