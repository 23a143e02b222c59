"""The model: an MLP, with HF-style save_pretrained / from_pretrained written with torch + json."""

import json
from pathlib import Path

import torch
from torch import nn

from eval_host.data import IN_FEATURES


class Net(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.hidden = hidden
        self.body = nn.Sequential(nn.Linear(IN_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.body(x)

    def save_pretrained(self, folder) -> None:
        """A folder holding config.json and the weights, as Hugging Face models save themselves."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"hidden": self.hidden}))
        torch.save(self.state_dict(), folder / "pytorch_model.bin")

    @classmethod
    def from_pretrained(cls, folder) -> "Net":
        folder = Path(folder)
        model = cls(**json.loads((folder / "config.json").read_text()))
        model.load_state_dict(torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True))
        return model
