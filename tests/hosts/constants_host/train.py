"""Train a tiny model for a fixed time budget and print a summary."""

import os
import time

import torch
from prepare import TIME_BUDGET, VOCAB, evaluate_bpb, make_data

# Hyperparameters: edit these directly
DEPTH = 2
WIDTH = 32
MATRIX_LR = 0.04
BATCH_SIZE = 64
MAX_STEPS = 150
SEED = 42
CHECKPOINT = "ckpt/model.pt"

torch.set_num_threads(1)
torch.manual_seed(SEED)
train_data, val_data = make_data()
layers = [torch.nn.Embedding(VOCAB, WIDTH)]
for _ in range(DEPTH - 1):
    layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(WIDTH, VOCAB))
optimizer = torch.optim.Adam(model.parameters(), lr=MATRIX_LR)

t0 = time.time()
step = 0
while step < MAX_STEPS and time.time() - t0 < TIME_BUDGET:
    ix = torch.randint(len(train_data) - 1, (BATCH_SIZE,))
    loss = torch.nn.functional.cross_entropy(model(train_data[ix]), train_data[ix + 1])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    step += 1
training_seconds = time.time() - t0

val_bpb = evaluate_bpb(model, val_data)
os.makedirs(os.path.dirname(CHECKPOINT), exist_ok=True)
torch.save(model.state_dict(), CHECKPOINT)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_seconds:.1f}")
print(f"num_steps:        {step}")
