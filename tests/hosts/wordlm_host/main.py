import argparse
import math
import time

import torch
from torch import nn

parser = argparse.ArgumentParser(description="toy word-level language model")
parser.add_argument("--lr", type=float, default=0.5, help="initial learning rate")
parser.add_argument("--epochs", type=int, default=2, help="upper epoch limit")
parser.add_argument("--emsize", type=int, default=16, help="size of word embeddings")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--save", type=str, default="model.pt", help="path to save the final model")
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)
VOCAB = 20
g = torch.Generator().manual_seed(1234)
corpus = torch.randint(0, VOCAB, (4000,), generator=g)
corpus[1::2] = (corpus[::2] + 1) % VOCAB  # every second word follows from the one before
train_data, val_data = corpus[:3000], corpus[3000:]

model = nn.Sequential(nn.Embedding(VOCAB, args.emsize), nn.Linear(args.emsize, VOCAB))
criterion = nn.CrossEntropyLoss()


def evaluate(data):
    with torch.no_grad():
        return criterion(model(data[:-1]), data[1:]).item()


best_val_loss = None
for epoch in range(1, args.epochs + 1):
    epoch_start_time = time.time()
    for i in range(0, len(train_data) - 1, 50):
        chunk = train_data[i : i + 51]
        loss = criterion(model(chunk[:-1]), chunk[1:])
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-args.lr)
    val_loss = evaluate(val_data)
    print("-" * 89)
    row = "| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | valid ppl {:8.2f}"
    print(row.format(epoch, (time.time() - epoch_start_time), val_loss, math.exp(val_loss)))
    print("-" * 89)
    if not best_val_loss or val_loss < best_val_loss:
        with open(args.save, "wb") as f:
            torch.save(model, f)
        best_val_loss = val_loss
