#!/usr/bin/env python3
"""examples/sentiment.rs's model and training in PyTorch, for BENCHMARKS.md's
side-by-side table, on exactly the same data: the split, vocabulary and token
ids that `cargo run --release --example sentiment -- --export DIR` writes
(DIR/train.safetensors, DIR/test.safetensors: `x` ids [N, 48] padded with 0,
`y` classes, `lengths`). The same model: Embedding(V, 64) -> [Dropout(input)]
-> LSTM(64, 128, layers, dropout, bidirectional) reading each tweet up to its
length (pack_padded_sequence) -> [Dropout(output)] on the top layer's final
hidden states -> Linear(·, 3); PyTorch's default initialisation. The same
training: Adam(lr), clip_grad_norm_(1.0), cross-entropy, batches of 32
reshuffled every epoch (last one partial), CosineAnnealingLR(T_max=epochs,
eta_min=lr/10) stepped per epoch; test accuracy after every epoch, the last
one reported.

Usage: python3 benches/sentiment_pytorch.py --data DIR [--epochs 4] [--threads 2]
       [--dropout P] [--input-dropout P] [--output-dropout P] [--layers L]
       [--bidirectional] [--seed 7]
Prints the test loss and accuracy per epoch and the seconds per epoch.
"""
import argparse, time
import torch
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--epochs", type=int, default=4)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--embed", type=int, default=64)
ap.add_argument("--hidden", type=int, default=128)
ap.add_argument("--layers", type=int, default=1)
ap.add_argument("--bidirectional", action="store_true")
ap.add_argument("--dropout", type=float, default=0.0)
ap.add_argument("--input-dropout", type=float, default=0.0)
ap.add_argument("--output-dropout", type=float, default=0.0)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--clip", type=float, default=1.0)
ap.add_argument("--seed", type=int, default=7)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

def load(name):
    t = load_file(f"{a.data}/{name}.safetensors")
    return t["x"].long(), t["y"].long(), t["lengths"].long()

(xtr, ytr, ltr), (xte, yte, lte) = load("train"), load("test")
V = int(max(xtr.max(), xte.max())) + 1
classes = int(max(ytr.max(), yte.max())) + 1
dirs = 2 if a.bidirectional else 1

class Net(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.embed = torch.nn.Embedding(V, a.embed)
        s.drop_in = torch.nn.Dropout(a.input_dropout)
        s.rnn = torch.nn.LSTM(a.embed, a.hidden, a.layers, batch_first=True,
                              dropout=a.dropout, bidirectional=a.bidirectional)
        s.drop_out = torch.nn.Dropout(a.output_dropout)
        s.head = torch.nn.Linear(dirs * a.hidden, classes)

    def forward(s, x, lengths):
        e = s.drop_in(s.embed(x))
        packed = torch.nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = s.rnn(packed)
        top = h[-dirs:]  # the top layer's final states, forward then reverse
        return s.head(s.drop_out(torch.cat(list(top), dim=1)))

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs, eta_min=a.lr / 10)
loss_fn = torch.nn.CrossEntropyLoss()

def batch(x, y, l, idx):
    t = int(l[idx].max())  # padded to the batch's own longest tweet, as ours
    return x[idx, :t], y[idx], l[idx]

print(f"data: {len(ytr)} training, {len(yte)} test, vocabulary {V}, {classes} classes; "
      f"{sum(p.numel() for p in net.parameters())} parameters; threads {a.threads}")
for epoch in range(a.epochs):
    t0 = time.time()
    net.train()
    perm = torch.randperm(len(ytr))
    total, n = 0.0, 0
    for i in range(0, len(perm), a.batch_size):
        xb, yb, lb = batch(xtr, ytr, ltr, perm[i:i + a.batch_size])
        opt.zero_grad()
        loss = loss_fn(net(xb, lb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip)
        opt.step()
        total += loss.item() * len(yb)
        n += len(yb)
    sched.step()
    secs = time.time() - t0
    net.eval()
    with torch.no_grad():
        right, tl = 0, 0.0
        for i in range(0, len(yte), 256):
            idx = torch.arange(i, min(i + 256, len(yte)))
            xb, yb, lb = batch(xte, yte, lte, idx)
            out = net(xb, lb)
            tl += loss_fn(out, yb).item() * len(yb)
            right += int((out.argmax(1) == yb).sum())
    print(f"epoch {epoch + 1}/{a.epochs}  loss {total / n:.4f}  test_loss {tl / len(yte):.4f}  "
          f"test_acc {100 * right / len(yte):.2f}%  {secs:.1f} s")
