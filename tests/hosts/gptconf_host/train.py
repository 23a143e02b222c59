import os

import torch
from model import TinyLM

# default config values
out_dir = "out"
eval_interval = 20
max_iters = 60
batch_size = 32
n_embd = 16
learning_rate = 1e-2
device = "cpu"
init_from = "scratch"  # 'scratch' or 'resume'
seed = 1337
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
exec(open("configurator.py").read())  # overrides from command line or config file
# -----------------------------------------------------------------------------

torch.set_num_threads(1)
torch.manual_seed(seed)
VOCAB = 16
g = torch.Generator().manual_seed(1234)
data = torch.randint(0, VOCAB, (6000,), generator=g)
data[1::3] = (data[::3][: len(data[1::3])] * 3) % VOCAB
split = {"train": data[:5000], "val": data[5000:]}

model = TinyLM(VOCAB, n_embd).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
iter_num = 0
if init_from == "resume":
    checkpoint = torch.load(os.path.join(out_dir, "ckpt.pt"))
    model.load_state_dict(checkpoint["model"])
    iter_num = checkpoint["iter_num"]


def get_batch(name):
    d = split[name]
    ix = torch.randint(len(d) - 1, (batch_size,))
    return d[ix], d[ix + 1]


@torch.no_grad()
def estimate_loss():
    out = {}
    for name in ("train", "val"):
        x, y = split[name][:-1], split[name][1:]
        out[name] = torch.nn.functional.cross_entropy(model(x), y).item()
    return out


while True:
    if iter_num % eval_interval == 0 or iter_num == max_iters:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if iter_num >= max_iters:
        break
    x, y = get_batch("train")
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    iter_num += 1

os.makedirs(out_dir, exist_ok=True)
checkpoint = {"model": model.state_dict(), "iter_num": iter_num}
torch.save(checkpoint, os.path.join(out_dir, "ckpt.pt"))
