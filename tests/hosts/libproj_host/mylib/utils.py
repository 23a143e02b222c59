"""A tiny yacs-style config node: attributes, nested nodes, `--a.b=value` overrides."""

import ast
import json
import os
import random

import torch


def set_seed(seed):
    random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(config):
    os.makedirs(config.system.work_dir, exist_ok=True)
    with open(os.path.join(config.system.work_dir, "config.json"), "w") as f:
        f.write(json.dumps(config.to_dict(), indent=2))


class CfgNode:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, CfgNode) else v for k, v in self.__dict__.items()}

    def merge_from_args(self, args):
        """Each argument is `--key.sub=value`; the value is read as a Python literal when it is one."""
        for arg in args:
            keyval = arg.split("=", 1)
            assert len(keyval) == 2 and keyval[0].startswith("--"), f"expected --key=value, got {arg}"
            key, val = keyval[0][2:], keyval[1]
            try:
                val = ast.literal_eval(val)
            except (ValueError, SyntaxError):
                pass
            obj = self
            keys = key.split(".")
            for k in keys[:-1]:
                obj = getattr(obj, k)
            assert hasattr(obj, keys[-1]), f"{key} is not an attribute of the config"
            setattr(obj, keys[-1], val)
