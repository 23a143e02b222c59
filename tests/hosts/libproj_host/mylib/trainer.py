"""A training loop that runs until max_iters (None: forever), calling back after each batch."""

import torch
from torch.nn import functional as F

from mylib.utils import CfgNode as CN


class Trainer:
    @staticmethod
    def get_default_config():
        C = CN()
        C.max_iters = None
        C.batch_size = 32
        C.learning_rate = 5e-4
        return C

    def __init__(self, config, model, x, y):
        self.config, self.model, self.x, self.y = config, model, x, y
        self.callbacks = []
        self.iter_num = 0
        self.loss = None

    def add_callback(self, fn):
        self.callbacks.append(fn)

    def run(self):
        config = self.config
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate)
        while True:
            ix = torch.randint(len(self.x), (config.batch_size,))
            self.loss = F.cross_entropy(self.model(self.x[ix]), self.y[ix])
            optimizer.zero_grad()
            self.loss.backward()
            optimizer.step()
            for fn in self.callbacks:
                fn(self)
            self.iter_num += 1
            if config.max_iters is not None and self.iter_num >= config.max_iters:
                break
