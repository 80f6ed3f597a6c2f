#!/usr/bin/env python3
"""Reference for stateful (truncated-BPTT) training: PyTorch's own
word_language_model loop (pytorch/examples, main.py: batchify, get_batch,
repackage_hidden, train, evaluate), without dropout, on a small character text.

Usage: generate.py OUT_DIR   (needs torch and safetensors; run from the repository root)

Writes into OUT_DIR/<case>/ for each case below:
  model.safetensors   initial weights under embed. rnn. head. (our checkpoint names),
                      metadata "recurrent" = {"cell", "nonlinearity", "output": "sequence"}
  train.safetensors   x: i64 [1, L], the training token stream (character ids)
  val.safetensors     x: i64 [1, L_v], the validation token stream
  after.safetensors   every weight after one epoch of the loop (SGD lr, clip_grad_norm_ clip),
                      loss: [steps] the per-batch training losses, val_loss: [1] the
                      validation loss after the epoch (evaluate(): token-weighted mean)
  case.json           the case's parameters

The loop, as main.py runs it: the stream cut into `batch` parallel streams
(batchify: stream b is the b-th contiguous slice of L // batch tokens), batches of
`bptt` steps in order (the last one shorter: min(bptt, len - 1 - i)), targets the
next tokens, hidden states zero at the start of the epoch and carried from batch to
batch detached (repackage_hidden); validation the same with `eval_batch` streams.
"""
import json, os, sys
import torch
from safetensors.torch import save_file

CASES = [
    dict(name="lstm-2layer", cell="lstm", embed=8, hidden=12, layers=2, batch=4, eval_batch=3,
         bptt=7, lr=2.0, clip=0.25, chars=600, val_chars=200, seed=11),
    dict(name="gru", cell="gru", embed=6, hidden=10, layers=1, batch=3, eval_batch=2,
         bptt=9, lr=1.0, clip=0.5, chars=500, val_chars=150, seed=12),
]

class RNNModel(torch.nn.Module):
    def __init__(s, c, ntoken):
        super().__init__()
        s.c = c
        s.embed = torch.nn.Embedding(ntoken, c["embed"])
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[c["cell"]]
        s.rnn = cls(c["embed"], c["hidden"], c["layers"])  # time-major, as main.py's
        s.head = torch.nn.Linear(c["hidden"], ntoken)

    def forward(s, x, hidden):
        out, hidden = s.rnn(s.embed(x), hidden)
        return s.head(out), hidden

    def init_hidden(s, bsz):
        z = torch.zeros(s.c["layers"], bsz, s.c["hidden"])
        return (z, z.clone()) if s.c["cell"] == "lstm" else z

def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()

def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)

def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)

def evaluate(model, source, c, ntokens):
    model.eval()
    total, hidden = 0.0, model.init_hidden(c["eval_batch"])
    crit = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, c["bptt"]):
            data, targets = get_batch(source, i, c["bptt"])
            output, hidden = model(data, hidden)
            total += len(data) * crit(output.view(-1, ntokens), targets).item()
            hidden = repackage_hidden(hidden)
    return total / (len(source) - 1)

def main():
    out = sys.argv[1]
    text = open("data/fortunes.txt", encoding="utf-8").read()
    for c in CASES:
        torch.manual_seed(c["seed"])
        corpus = text[: c["chars"] + c["val_chars"]]
        vocab = sorted(set(corpus))
        ids = torch.tensor([vocab.index(ch) for ch in corpus], dtype=torch.long)
        train_ids, val_ids = ids[: c["chars"]], ids[c["chars"]:]
        ntokens = len(vocab)
        model = RNNModel(c, ntokens)
        folder = os.path.join(out, c["name"])
        os.makedirs(folder, exist_ok=True)
        meta = {"recurrent": json.dumps({"cell": c["cell"], "nonlinearity": "tanh", "output": "sequence"})}
        save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, f"{folder}/model.safetensors", metadata=meta)
        save_file({"x": train_ids[None, :].clone()}, f"{folder}/train.safetensors")
        save_file({"x": val_ids[None, :].clone()}, f"{folder}/val.safetensors")
        # main.py's train(), one epoch.
        train_data = batchify(train_ids, c["batch"])
        val_data = batchify(val_ids, c["eval_batch"])
        crit = torch.nn.CrossEntropyLoss()
        model.train()
        hidden = model.init_hidden(c["batch"])
        losses = []
        for batch, i in enumerate(range(0, train_data.size(0) - 1, c["bptt"])):
            data, targets = get_batch(train_data, i, c["bptt"])
            hidden = repackage_hidden(hidden)
            model.zero_grad()
            output, hidden = model(data, hidden)
            loss = crit(output.view(-1, ntokens), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-c["lr"])
            losses.append(loss.item())
        after = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        after["loss"] = torch.tensor(losses)
        after["val_loss"] = torch.tensor([evaluate(model, val_data, c, ntokens)])
        save_file(after, f"{folder}/after.safetensors")
        json.dump(dict(c, vocab="".join(vocab)), open(f"{folder}/case.json", "w"), indent=1)
        print(c["name"], "steps", len(losses), "val_loss", after["val_loss"].item())

if __name__ == "__main__":
    main()
