import torch

DATA_SEED = 1234


def make_split(n, seed=DATA_SEED):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.linspace(-1, 1, 8).unsqueeze(1)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return x, y
