"""A word model that prints the validation loss every epoch and the test loss once at the end."""

import argparse
import time

import torch
from torch import nn

parser = argparse.ArgumentParser(description="toy word model")
parser.add_argument("--lr", type=float, default=1e-2, help="initial learning rate")
parser.add_argument("--epochs", type=int, default=2, help="upper epoch limit")
parser.add_argument("--max_time", type=float, default=20, help="stop training after this many seconds")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--save", type=str, default="model.pt", help="path to save the final model")
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)
g = torch.Generator().manual_seed(1234)
corpus = torch.randint(0, 20, (3000,), generator=g)
corpus[1::2] = (corpus[::2] + 1) % 20
train_data, val_data, test_data = corpus[:2000], corpus[2000:2500], corpus[2500:]
model = nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 20))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)


def evaluate(data):
    with torch.no_grad():
        return criterion(model(data[:-1]), data[1:]).item()


start = time.time()
for epoch in range(1, args.epochs + 1):
    for i in range(0, len(train_data) - 1, 50):
        chunk = train_data[i : i + 51]
        loss = criterion(model(chunk[:-1]), chunk[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"| end of epoch {epoch:3d} | valid loss {evaluate(val_data):5.3f} |")
    with open(args.save, "wb") as f:
        torch.save(model, f)
    if time.time() - start > args.max_time:
        break
print(f"| End of training | test loss {evaluate(test_data):5.3f} |")
