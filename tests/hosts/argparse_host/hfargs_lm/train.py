"""Train a tiny bigram language model on a synthetic Markov-chain corpus.

Arguments are dataclasses parsed by an HfArgumentParser-style parser, e.g.
    python -m hfargs_lm.train --learning_rate 3e-2 --steps 60
Prints `eval/loss=<v>` lines and `peak_mem_mb=<v>`; saves
`<output_dir>/model.pt` (the same path every run).
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from hfargs_lm.argparsing import HfArgumentParser

# Module-level alias used in an annotation: resolving it needs this module's
# namespace, exactly like transformers' own Literal/Optional fields.
OptimizerName = Literal["adamw", "sgd"]

VOCAB = 24
DATA_SEED = 1234  # the corpus is fixed; --seed only changes init and batches
# Stop training this long before AR_DEADLINE: evaluating, saving and torch's
# interpreter shutdown (0.5-1 s) must all fit before the runner's deadline.
DEADLINE_MARGIN_S = 2.0


@dataclass
class ModelArguments:
    hidden: int = field(default=32, metadata={"help": "embedding and MLP width"})


@dataclass
class TrainingArguments:
    learning_rate: float = 1e-2
    steps: int = 60
    batch_size: int = 64
    optimizer: OptimizerName = "adamw"
    eval_steps: int = 20
    seed: int = 0
    output_dir: str = "checkpoints"
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "path to a model.pt to continue from"})


class BigramLM(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, VOCAB))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(tokens))


def make_corpus(length: int, generator: torch.Generator) -> torch.Tensor:
    """Sample a token stream from a fixed, peaked random Markov chain."""
    logits = 3.0 * torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(DATA_SEED))
    cdf = torch.softmax(logits, dim=1).cumsum(dim=1).tolist()
    draws = torch.rand(length, generator=generator).tolist()
    tokens = [0]
    for u in draws[1:]:  # plain Python: far faster than a torch call per token
        tokens.append(min(bisect.bisect_left(cdf[tokens[-1]], u), VOCAB - 1))
    return torch.tensor(tokens)


def evaluate(model: nn.Module, val: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(val[:-1]), val[1:])
    model.train()
    return loss.item()


def seconds_left() -> float:
    """Seconds until the runner's AR_DEADLINE (Unix time); inf when unset."""
    deadline = os.environ.get("AR_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def main() -> None:
    torch.set_num_threads(1)
    parser = HfArgumentParser((ModelArguments, TrainingArguments))
    model_args, args = parser.parse_args_into_dataclasses()
    torch.manual_seed(args.seed)

    data_gen = torch.Generator().manual_seed(DATA_SEED)
    train, val = make_corpus(3000, data_gen), make_corpus(1000, data_gen)

    model = BigramLM(model_args.hidden)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9)
    start_step = 0
    if args.resume_from_checkpoint:
        state = torch.load(args.resume_from_checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = state["step"]
        print(f"resumed_from={args.resume_from_checkpoint}", flush=True)

    batch_gen = torch.Generator().manual_seed(args.seed + start_step)
    step = start_step
    for step in range(start_step + 1, start_step + args.steps + 1):
        if seconds_left() < DEADLINE_MARGIN_S:
            step -= 1
            print(f"deadline near: stopping early after step {step}", flush=True)
            break
        idx = torch.randint(0, len(train) - 1, (args.batch_size,), generator=batch_gen)
        loss = nn.functional.cross_entropy(model(train[idx]), train[idx + 1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_steps == 0 and step < start_step + args.steps:
            print(f"step={step} train/loss={loss.item():.6f} eval/loss={evaluate(model, val):.6f}", flush=True)

    print(f"step={step} eval/loss={evaluate(model, val):.6f}", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"peak_mem_mb={peak_mb:.1f}", flush=True)

    os.makedirs(args.output_dir, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "args": {**dataclasses.asdict(model_args), **dataclasses.asdict(args)},
    }
    torch.save(state, f"{args.output_dir}/model.pt")


if __name__ == "__main__":
    main()
