"""A small character model whose size comes from a config node."""

from torch import nn

from mylib.utils import CfgNode as CN


class GPT(nn.Module):
    @staticmethod
    def get_default_config():
        C = CN()
        C.n_embd = 16
        C.vocab_size = None
        C.block_size = None
        return C

    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.head = nn.Linear(config.n_embd * config.block_size, config.vocab_size)

    def forward(self, idx):
        return self.head(self.wte(idx).flatten(1))
