"""A character-level model of a small text, trained with mylib."""

import os
import sys

import torch
from mylib.model import GPT
from mylib.trainer import Trainer
from mylib.utils import CfgNode as CN
from mylib.utils import set_seed, setup_logging
from torch.nn import functional as F


def get_config():
    C = CN()
    C.system = CN()
    C.system.seed = 3407
    C.system.work_dir = "./out/chars"
    C.data = CN()
    C.data.block_size = 4
    C.model = GPT.get_default_config()
    C.trainer = Trainer.get_default_config()
    C.trainer.learning_rate = 5e-3
    return C


if __name__ == "__main__":
    config = get_config()
    config.merge_from_args(sys.argv[1:])
    torch.set_num_threads(1)
    setup_logging(config)
    set_seed(config.system.seed)
    text = "".join("to be or not to be, that is the question. " for _ in range(40))
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    block = config.data.block_size
    x = torch.stack([ids[i : i + block] for i in range(len(ids) - block)])
    y = ids[block:]
    split = int(0.9 * len(x))
    config.model.vocab_size, config.model.block_size = len(chars), block
    model = GPT(config.model)
    trainer = Trainer(config.trainer, model, x[:split], y[:split])

    def batch_end(trainer):
        if trainer.iter_num % 20 == 0:
            print(f"iter {trainer.iter_num}: train loss {trainer.loss.item():.5f}")
        if trainer.iter_num % 100 == 0:
            with torch.no_grad():
                val_loss = F.cross_entropy(model(x[split:]), y[split:]).item()
            print(f"iter {trainer.iter_num}: val loss {val_loss:.5f}")
            torch.save(model.state_dict(), os.path.join(config.system.work_dir, "model.pt"))

    trainer.add_callback(batch_end)
    trainer.run()
