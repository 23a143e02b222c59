"""Teach the model to add two digits; scored by exact answers."""

import sys

import torch
from mylib.model import GPT
from mylib.trainer import Trainer
from mylib.utils import CfgNode as CN
from mylib.utils import set_seed, setup_logging


def get_config():
    C = CN()
    C.system = CN()
    C.system.seed = 3407
    C.system.work_dir = "./out/adder"
    C.model = GPT.get_default_config()
    C.trainer = Trainer.get_default_config()
    return C


if __name__ == "__main__":
    config = get_config()
    config.merge_from_args(sys.argv[1:])
    setup_logging(config)
    set_seed(config.system.seed)
    a, b = torch.randint(0, 10, (2, 500))
    x, y = torch.stack([a, b], 1), a + b
    config.model.vocab_size, config.model.block_size = 19, 2
    model = GPT(config.model)
    trainer = Trainer(config.trainer, model, x, y)

    def report(trainer):
        if trainer.iter_num % 50 == 0:
            score = (model(x).argmax(1) == y).float().mean().item()
            print(f"iter {trainer.iter_num}: score {score:.4f}")

    trainer.add_callback(report)
    trainer.run()
