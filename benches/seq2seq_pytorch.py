#!/usr/bin/env python3
"""The seq2seq examples' model and loop in PyTorch, for BENCHMARKS.md.

Trains the reference model (`Seq2Seq` of tests/seq2seq/generate.py, PyTorch's default
initialisation) on the split an example exported (`--export DIR`: train.safetensors,
test.safetensors, vocab.json) with the example's settings: Adam, the learning rate on a
cosine from --lr to --lr / 10 over the epochs (set per epoch), gradient norm clipped to 1,
shuffled batches, mean cross-entropy; then greedy decoding of the held-out sources and
their exact match (every token up to and including eos).

  cargo run --release --example addition -- --export /tmp/addition
  python3 benches/seq2seq_pytorch.py --data /tmp/addition --cell lstm --embed 16 --hidden 128 \\
      --attention general --epochs 20 --max-len 5
"""
import argparse, json, math, os, sys, time
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "seq2seq"))
from generate import Seq2Seq, loss_fn  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--cell", default="lstm")
p.add_argument("--embed", type=int, default=16)
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--bidirectional", action="store_true")
p.add_argument("--attention", default="general")
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=0.003)
p.add_argument("--max-len", type=int, required=True)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu", help="cpu, or cuda (cuDNN's LSTM/GRU; TF32 off)")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
vocab = json.load(open(os.path.join(a.data, "vocab.json")))
dev = torch.device(a.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
tr = {k: v.to(dev) for k, v in load_file(os.path.join(a.data, "train.safetensors")).items()}
te = {k: v.to(dev) for k, v in load_file(os.path.join(a.data, "test.safetensors")).items()}
c = dict(cell=a.cell, attention=a.attention, src_vocab=len(vocab["src"]["tokens"]),
         tgt_vocab=len(vocab["tgt"]["tokens"]), embed=a.embed, hidden=a.hidden, layers=1,
         bidirectional=a.bidirectional)
m = Seq2Seq(c).to(dev)
opt = torch.optim.Adam(m.parameters(), lr=a.lr)
n = tr["src"].shape[0]
print(f"PyTorch {torch.__version__} on {a.device}, {a.threads} threads: {sum(x.numel() for x in m.parameters())} parameters, "
      f"{n} training pairs, {te['src'].shape[0]} held out")


def exact_match():
    m.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, te["src"].shape[0], 500):
            s = slice(i, i + 500)
            gen, _ = m.greedy(te["src"][s], te["src_lengths"][s], 1, 2, a.max_len)
            want = te["tgt_out"][s]
            for g, w in zip(gen, want):
                w = w[w != -100]
                right += int(len(w) <= a.max_len and torch.equal(g[: len(w)], w))
    m.train()
    return right / te["src"].shape[0]


start = time.time()
for epoch in range(1, a.epochs + 1):
    done = (epoch - 1) / max(a.epochs - 1, 1)
    for g in opt.param_groups:
        g["lr"] = a.lr / 10 + 0.45 * a.lr * (1 + math.cos(math.pi * done))
    t0 = time.time()
    order = torch.randperm(n).to(dev)
    total, batches = 0.0, 0
    for i in range(0, n, a.batch):
        idx = order[i : i + a.batch]
        opt.zero_grad()
        loss = loss_fn(m(tr["src"][idx], tr["src_lengths"][idx], tr["tgt_in"][idx]), tr["tgt_out"][idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        total += loss.item()
        batches += 1
    print(f"epoch {epoch:>2}/{a.epochs}  loss {total / batches:.4f}  ({time.time() - t0:.1f}s)", flush=True)
acc = exact_match()
print(f"held-out exact match {100 * acc:.2f}% after {a.epochs} epochs, {time.time() - start:.0f} s training")
