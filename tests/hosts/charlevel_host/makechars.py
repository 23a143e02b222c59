"""A tiny character-level model of synthetic names: argparse under a main guard, trains until stopped."""

import argparse
import math
import os
import random

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter


class NewGELU(nn.Module):
    """The tanh approximation of GELU."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class CharMLP(nn.Module):
    def __init__(self, vocab, block, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.net = nn.Sequential(nn.Linear(block * n_embd, 64), NewGELU(), nn.Linear(64, vocab))

    def forward(self, idx):
        return self.net(self.wte(idx).flatten(1))


def make_names(n=600):
    rng = random.Random(1234)  # the data never depends on --seed
    syllables = ["ka", "lo", "mi", "ra", "ne", "to", "sa", "vi"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def pairs(names, stoi, block):
    xs, ys = [], []
    for name in names:
        context = [0] * block
        for ch in name + ".":
            xs.append(context)
            ys.append(stoi[ch])
            context = context[1:] + [stoi[ch]]
    return torch.tensor(xs), torch.tensor(ys)


@torch.no_grad()
def evaluate(model, x, y):
    return F.cross_entropy(model(x), y).item()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="char-level names model")
    parser.add_argument("--work-dir", "-o", type=str, default="out", help="output working directory")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimization steps, -1 for infinite")
    parser.add_argument("--seed", type=int, default=3407, help="seed")
    parser.add_argument("--n-embd", type=int, default=16, help="embedding size")
    parser.add_argument("--batch-size", "-b", type=int, default=32, help="batch size")
    parser.add_argument("--learning-rate", "-l", type=float, default=5e-3, help="learning rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    writer = SummaryWriter(log_dir=args.work_dir)

    names = make_names()
    stoi = {ch: i + 1 for i, ch in enumerate(sorted(set("".join(names))))}
    stoi["."] = 0
    block = 3
    x_train, y_train = pairs(names[:500], stoi, block)
    x_test, y_test = pairs(names[500:], stoi, block)
    model = CharMLP(len(stoi), block, args.n_embd)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)

    best_loss = None
    step = 0
    while True:
        ix = torch.randint(len(x_train), (args.batch_size,))
        loss = F.cross_entropy(model(x_train[ix]), y_train[ix])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step} | loss {loss.item():.4f}")
        if step > 0 and step % 50 == 0:
            train_loss, test_loss = evaluate(model, x_train, y_train), evaluate(model, x_test, y_test)
            writer.add_scalar("Loss/train", train_loss, step)
            writer.add_scalar("Loss/test", test_loss, step)
            writer.flush()
            print(f"step {step} train loss: {train_loss} test loss: {test_loss}")
            if best_loss is None or test_loss < best_loss:
                torch.save(model.state_dict(), os.path.join(args.work_dir, "model.pt"))
                best_loss = test_loss
        step += 1
        if args.max_steps >= 0 and step >= args.max_steps:
            break
