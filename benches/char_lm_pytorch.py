#!/usr/bin/env python3
"""examples/char_lm.rs's model and training in PyTorch, for BENCHMARKS.md's
side-by-side table: the same corpus and split (first 90% of data/fortunes.txt
trains, the rest validates, characters sorted as the vocabulary), the same model
(Embedding(V, 32) -> LSTM(32, 256) -> Linear(256, V) at every step), PyTorch's
word_language_model loop (batchify into 32 streams, batches of 64 steps in order,
hidden states carried detached, validation in 10 streams), Adam(2e-3), clip_grad_norm_
5.0, cosine annealing to lr/10 stepped per epoch, 5 epochs; optionally more layers and word_language_model's
dropouts (nn.Dropout on the embedding's output and before the head, nn.LSTM's between
layers), as the example's flags of the same names.

Usage: python3 benches/char_lm_pytorch.py [--epochs 5] [--threads 2] [--max-chars N]
       [--layers L] [--dropout P] [--input-dropout P] [--output-dropout P]
Prints validation perplexity and seconds per epoch.
"""
import argparse, math, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--max-chars", type=int, default=None)
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--embed", type=int, default=32)
ap.add_argument("--seq-len", type=int, default=64)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--layers", type=int, default=1)
ap.add_argument("--dropout", type=float, default=0.0)
ap.add_argument("--input-dropout", type=float, default=0.0)
ap.add_argument("--output-dropout", type=float, default=0.0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

text = open("data/fortunes.txt", encoding="utf-8").read()
if a.max_chars:
    text = text[: a.max_chars]
vocab = sorted(set(text))
index = {c: i for i, c in enumerate(vocab)}
ids = torch.tensor([index[c] for c in text], dtype=torch.long)
cut = len(ids) * 9 // 10
V = len(vocab)

def batchify(d, bsz):
    n = d.size(0) // bsz
    return d.narrow(0, 0, n * bsz).view(bsz, -1).t().contiguous()

train, val = batchify(ids[:cut], a.batch_size), batchify(ids[cut:], 10)

class LM(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.embed = torch.nn.Embedding(V, a.embed)
        s.drop_in = torch.nn.Dropout(a.input_dropout)
        s.rnn = torch.nn.LSTM(a.embed, a.hidden, a.layers, dropout=a.dropout)
        s.drop_out = torch.nn.Dropout(a.output_dropout)
        s.head = torch.nn.Linear(a.hidden, V)
    def forward(s, x, h):
        y, h = s.rnn(s.drop_in(s.embed(x)), h)
        return s.head(s.drop_out(y)), h

def zeros(b):
    z = torch.zeros(a.layers, b, a.hidden)
    return (z, z.clone())

model = LM()
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs, eta_min=a.lr / 10)
crit = torch.nn.CrossEntropyLoss()
print(f"pytorch {torch.__version__}, {a.threads} threads; {len(ids)} characters, vocabulary {V}")
for epoch in range(a.epochs):
    start = time.time()
    model.train()
    h = zeros(a.batch_size)
    for i in range(0, train.size(0) - 1, a.seq_len):
        s = min(a.seq_len, train.size(0) - 1 - i)
        x, y = train[i:i + s], train[i + 1:i + 1 + s].reshape(-1)
        h = tuple(v.detach() for v in h)
        opt.zero_grad()
        out, h = model(x, h)
        loss = crit(out.view(-1, V), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    train_s = time.time() - start
    model.eval()
    total, h = 0.0, zeros(10)
    with torch.no_grad():
        for i in range(0, val.size(0) - 1, a.seq_len):
            s = min(a.seq_len, val.size(0) - 1 - i)
            x, y = val[i:i + s], val[i + 1:i + 1 + s].reshape(-1)
            out, h = model(x, h)
            total += s * crit(out.view(-1, V), y).item()
    vl = total / (val.size(0) - 1)
    sched.step()
    print(f"epoch {epoch + 1}: validation perplexity {math.exp(vl):.2f} (loss {vl:.4f}), train {train_s:.1f} s, in all {time.time() - start:.1f} s")
