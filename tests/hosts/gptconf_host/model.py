from torch import nn


class TinyLM(nn.Module):
    def __init__(self, vocab, n_embd):
        super().__init__()
        self.emb = nn.Embedding(vocab, n_embd)
        self.head = nn.Linear(n_embd, vocab)

    def forward(self, idx):
        return self.head(self.emb(idx))
