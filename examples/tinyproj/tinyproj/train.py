"""Train a tiny next-token MLP on a synthetic order-2 Markov "language".

    python -m tinyproj.train --lr 3e-3

The token stream is fixed (DATA_SEED); --seed changes only the initial weights
and the batch order, so a run is deterministic. Prints `val_loss=<v>` (mean
cross-entropy in nats on held-out text; the floor is the language's entropy,
about 0.9) and saves `tinyproj.pt` into --out_dir, else $AR_RUN_DIR when set,
else checkpoints/.
"""

import argparse
import bisect
import os
import time

import torch
from torch import nn

VOCAB = 12
CONTEXT = 2  # tokens the model sees; the language is order 2, so that is enough
DATA_SEED = 1234
# Stop training this long before AR_DEADLINE: evaluating, saving and torch's
# interpreter shutdown (0.5-1 s) must fit before the runner's deadline.
DEADLINE_MARGIN_S = 2.0


def make_language(length: int, generator: torch.Generator) -> torch.Tensor:
    """Sample a token stream where each token depends on the two before it."""
    table_gen = torch.Generator().manual_seed(DATA_SEED)
    logits = 4.0 * torch.randn(VOCAB * VOCAB, VOCAB, generator=table_gen)
    cdf = torch.softmax(logits, dim=1).cumsum(dim=1).tolist()
    tokens = [0, 1]
    for u in torch.rand(length - 2, generator=generator).tolist():
        row = cdf[tokens[-2] * VOCAB + tokens[-1]]
        tokens.append(min(bisect.bisect_left(row, u), VOCAB - 1))
    return torch.tensor(tokens)


def windows(stream: torch.Tensor) -> tuple:
    """All (context, next token) pairs of a stream."""
    ctx = torch.stack([stream[i : len(stream) - CONTEXT + i] for i in range(CONTEXT)], dim=1)
    return ctx, stream[CONTEXT:]


class TinyMLP(nn.Module):
    def __init__(self, hidden: int, embed: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, embed)
        self.mlp = nn.Sequential(nn.Linear(CONTEXT * embed, hidden), nn.ReLU(), nn.Linear(hidden, VOCAB))

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(ctx).flatten(1))


def seconds_left() -> float:
    """Seconds until the runner's AR_DEADLINE (Unix time); inf when unset."""
    deadline = os.environ.get("AR_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", default=None, help="default: $AR_RUN_DIR, else checkpoints")
    parser.add_argument("--resume", default=None, help="a tinyproj.pt to continue from")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: threads only add noise
    torch.manual_seed(args.seed)

    data_gen = torch.Generator().manual_seed(DATA_SEED)
    x_train, y_train = windows(make_language(20_000, data_gen))
    x_val, y_val = windows(make_language(5_000, data_gen))

    model = TinyMLP(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start_step = 0
    if args.resume:
        state = torch.load(args.resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = state["step"]
        print(f"resumed_from={args.resume}", flush=True)

    batch_gen = torch.Generator().manual_seed(args.seed + start_step)
    step = start_step
    for step in range(start_step + 1, start_step + args.steps + 1):
        if seconds_left() < DEADLINE_MARGIN_S:
            step -= 1
            print(f"deadline near: stopping early after step {step}", flush=True)
            break
        idx = torch.randint(0, len(y_train), (args.batch_size,), generator=batch_gen)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step={step} train_loss={loss.item():.4f}", flush=True)

    with torch.no_grad():
        val_loss = nn.functional.cross_entropy(model(x_val), y_val).item()
    print(f"step={step} val_loss={val_loss:.6f}", flush=True)

    out_dir = args.out_dir or os.environ.get("AR_RUN_DIR") or "checkpoints"
    os.makedirs(out_dir, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "args": vars(args)}
    torch.save(state, os.path.join(out_dir, "tinyproj.pt"))


if __name__ == "__main__":
    main()
