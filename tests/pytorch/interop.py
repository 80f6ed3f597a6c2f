#!/usr/bin/env python3
"""Checks, with real PyTorch, that checkpoints written by `recurrent` load into
torch modules and compute the same outputs.

Usage: interop.py DIR   where DIR holds pairs CASE.model.safetensors +
CASE.data.safetensors + CASE.output.safetensors (our `predict` output), made by
`recurrent train ... --save` and `recurrent predict`. Prints one line per case
with the largest deviation and exits non-zero if any exceeds 1e-5.
"""
import json, sys, os, glob
import torch
from safetensors import safe_open
from safetensors.torch import load_file


class Net(torch.nn.Module):
    def __init__(s, meta, sd):
        super().__init__()
        cell = meta["cell"]
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        g = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
        hidden = sd["rnn.weight_hh_l0"].shape[1]
        layers = len([k for k in sd if k.startswith("rnn.weight_ih_l") and not k.endswith("_reverse")])
        bidir = "rnn.weight_ih_l0_reverse" in sd
        kw = dict(num_layers=layers, bidirectional=bidir, batch_first=True)
        if cell == "rnn":
            kw["nonlinearity"] = meta.get("nonlinearity", "tanh")
        s.output = meta.get("output", "last")
        s.cell = cell
        s.bidir = bidir
        if "embed.weight" in sd:
            s.embed = torch.nn.Embedding(*sd["embed.weight"].shape)
        inp = sd["rnn.weight_ih_l0"].shape[1]
        s.rnn = cls(inp, hidden, **kw)
        s.head = torch.nn.Linear(*reversed(sd["head.weight"].shape))

    def forward(s, x, lengths=None):
        if hasattr(s, "embed"):
            x = s.embed(x)
        if lengths is not None:
            p = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, h = s.rnn(p)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        else:
            y, h = s.rnn(x)
        if s.cell == "lstm":
            h = h[0]
        if s.output == "last":
            return s.head(torch.cat([h[-2], h[-1]], 1) if s.bidir else h[-1])
        return s.head(y)


def main(d):
    worst_all = 0.0
    for mp in sorted(glob.glob(os.path.join(d, "*.model.safetensors"))):
        case = os.path.basename(mp)[: -len(".model.safetensors")]
        with safe_open(mp, "pt") as f:
            meta = json.loads(f.metadata()["recurrent"])
        sd = load_file(mp)
        net = Net(meta, sd)
        net.load_state_dict(sd, strict=True)  # every name and shape must match exactly
        data = load_file(os.path.join(d, case + ".data.safetensors"))
        ours = load_file(os.path.join(d, case + ".output.safetensors"))["output"]
        with torch.no_grad():
            theirs = net(data["x"], data.get("lengths"))
        worst = (theirs - ours).abs().max().item()
        worst_all = max(worst_all, worst)
        print(f"{case}: torch loads it (strict), output {tuple(theirs.shape)}, largest deviation from recurrent's predict {worst:.3e}")
    print(f"largest deviation {worst_all:.3e}")
    sys.exit(0 if worst_all <= 1e-5 else 1)


if __name__ == "__main__":
    main(sys.argv[1])
