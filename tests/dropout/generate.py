#!/usr/bin/env python3
"""Reference for dropout: our masks, drawn here by the same counter-based hash
(src/dropout.rs, reimplemented in plain integer arithmetic), applied by hand to
a PyTorch model built layer by layer, and the loss and every gradient of one
training step under them.

Usage: generate.py OUT_DIR   (needs torch, numpy and safetensors)

Writes into OUT_DIR/<case>/ for each case below:
  model.safetensors     the weights under embed. rnn. head. (our checkpoint names),
                        metadata "recurrent" = {"cell", "output", "dropout": {...}}
  data.safetensors      x (f32 [N, T, F] or i64 ids [N, T]), y
  expected.safetensors  loss: [1], and grad.<name> for every weight
  case.json             the case's parameters (step: the training step whose masks)

The masks (src/dropout.rs): mix = the PCG hash (Jarzynski and Olano 2020); the
step key k = mix(mix(mix(mix(seed_lo) ^ seed_hi) ^ step_lo) ^ step_hi); a site's
key s = mix(k ^ mix(code)), code 1 for the input, 2 for the output, 0x100 + k for
the input of layer k >= 1, 0x200 + k*D + d for recurrent dropout's mask on the
state feeding W_hh of layer k, direction d; element i is kept when mix(s ^ mix(i)) >> 8 >=
ceil(p * 2^24), and scaled by 1/(1-p) in f32. Element i counts time-major:
i = (t*N + n)*F + f for [T, N, F] activations, i = n*D + f for the head's input
[N, D] of a `last` model (the top layer's final states, directions concatenated),
i = n*H + j for a recurrent mask [N, H] (the same at every step).

With recurrent dropout (case key "recurrent") the layers run step by step here,
PyTorch's cell formulas written out with the nn module's own weights, the
recurrent product reading h_prev * mask and the rest of the cell h_prev itself
(the GRU's z * h_prev).
"""
import json, math, os, sys
import numpy as np
import torch
from safetensors.torch import save_file

M = 0xFFFFFFFF


def mix(x):
    x = np.asarray(x, dtype=np.uint64) & M
    s = (x * 747796405 + 2891336453) & M
    w = (((s >> ((s >> 28) + 4)) ^ s) * 277803737) & M
    return ((w >> 22) ^ w) & M


def step_key(seed, step):
    k = mix(seed & M)
    for w in (seed >> 32, step & M, step >> 32):
        k = mix(k ^ w)
    return k


def mask(seed, step, code, p, n):
    """The mask of a site, n elements: 0 or 1/(1-p) (f32)."""
    s = mix(step_key(seed, step) ^ mix(code))
    h = mix(s ^ mix(np.arange(n, dtype=np.uint64))) >> 8
    keep = h >= math.ceil(p * (1 << 24))
    scale = np.float32(1.0 / (1.0 - p))
    return torch.from_numpy(np.where(keep, scale, np.float32(0)).astype(np.float32))


def time_major_mask(c, code, p, shape):
    """A mask for batch-first [N, T, F] activations, drawn in time-major order."""
    n, t, f = shape
    m = mask(c["seed"], c["step"], code, p, n * t * f).reshape(t, n, f)
    return m.permute(1, 0, 2)


def manual_layer(c, layer, k, x):
    """`layer` (an nn.LSTM/GRU/RNN of one layer) over batch-first x [N, T, I],
    step by step, recurrent dropout's masks on the state feeding W_hh; returns
    the output [N, T, D*H] and the final states as the module would."""
    n, t, _ = x.shape
    hid, dirs = c["hidden"], 2 if c["bidir"] else 1
    outs, hns, cns = [], [], []
    for d in range(dirs):
        sfx = "_l0" + ("_reverse" if d == 1 else "")
        w_ih, w_hh = getattr(layer, "weight_ih" + sfx), getattr(layer, "weight_hh" + sfx)
        b_ih, b_hh = getattr(layer, "bias_ih" + sfx), getattr(layer, "bias_hh" + sfx)
        m = mask(c["seed"], c["step"], 0x200 + k * dirs + d, c["recurrent"], n * hid).reshape(n, hid)
        h = torch.zeros(n, hid)
        cs = torch.zeros(n, hid)
        ys = [None] * t
        for ti in (range(t - 1, -1, -1) if d == 1 else range(t)):
            gi = x[:, ti] @ w_ih.t() + b_ih
            gh = (h * m) @ w_hh.t() + b_hh
            if c["cell"] == "lstm":
                i, f, g, o = (gi + gh).chunk(4, 1)
                cs = torch.sigmoid(f) * cs + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(cs)
            elif c["cell"] == "gru":
                ir, iz, inn = gi.chunk(3, 1)
                hr, hz, hn = gh.chunk(3, 1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                nn_ = torch.tanh(inn + r * hn)
                h = (1 - z) * nn_ + z * h
            else:
                h = torch.tanh(gi + gh)
            ys[ti] = h
        outs.append(torch.stack(ys, 1))
        hns.append(h)
        cns.append(cs)
    y = torch.cat(outs, 2)
    hn = torch.stack(hns)
    return y, ((hn, torch.stack(cns)) if c["cell"] == "lstm" else hn)


CASES = [
    dict(name="lstm-2layer-embed-seq-ce", cell="lstm", vocab=9, embed=5, hidden=6, layers=2,
         bidir=False, output="sequence", loss="ce", n=4, t=7, out=9,
         dropout=0.3, input=0.2, output_p=0.25, seed=9, step=3),
    dict(name="gru-bidir-2layer-last-mse", cell="gru", feat=4, hidden=5, layers=2,
         bidir=True, output="last", loss="mse", n=5, t=6, out=3,
         dropout=0.4, input=0.1, output_p=0.5, seed=2**40 + 17, step=1),
    dict(name="rnn-3layer-last-ce", cell="rnn", feat=3, hidden=7, layers=3,
         bidir=False, output="last", loss="ce", n=6, t=5, out=4,
         dropout=0.5, input=0.0, output_p=0.0, seed=1, step=12),
    # Recurrent dropout (the layers run by hand, see manual_layer).
    dict(name="lstm-bidir-2layer-recurrent-last-ce", cell="lstm", feat=3, hidden=5, layers=2,
         bidir=True, output="last", loss="ce", n=5, t=6, out=3,
         dropout=0.2, input=0.0, output_p=0.3, recurrent=0.3, seed=21, step=4),
    dict(name="gru-embed-recurrent-seq-ce", cell="gru", vocab=7, embed=4, hidden=6, layers=1,
         bidir=False, output="sequence", loss="ce", n=4, t=5, out=7,
         dropout=0.0, input=0.1, output_p=0.0, recurrent=0.4, seed=5, step=2),
    dict(name="rnn-2layer-recurrent-last-mse", cell="rnn", feat=4, hidden=7, layers=2,
         bidir=False, output="last", loss="mse", n=6, t=4, out=2,
         dropout=0.0, input=0.0, output_p=0.0, recurrent=0.5, seed=8, step=7),
]


def run(c, folder):
    torch.manual_seed(c["seed"] % 1000)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[c["cell"]]
    dirs = 2 if c["bidir"] else 1
    d_top = dirs * c["hidden"]
    embed = torch.nn.Embedding(c["vocab"], c["embed"]) if "vocab" in c else None
    width = c["embed"] if embed else c["feat"]
    layers = [cls(width if k == 0 else d_top, c["hidden"], batch_first=True,
                  bidirectional=c["bidir"]) for k in range(c["layers"])]
    head = torch.nn.Linear(d_top, c["out"])
    n, t = c["n"], c["t"]
    if embed:
        x = torch.randint(0, c["vocab"], (n, t))
    else:
        x = torch.randn(n, t, c["feat"])
    # Forward, the masks applied by hand.
    h = embed(x) if embed else x
    if c["input"] > 0:
        h = h * time_major_mask(c, 1, c["input"], h.shape)
    finals = None
    for k, layer in enumerate(layers):
        if k > 0 and c["dropout"] > 0:
            h = h * time_major_mask(c, 0x100 + k, c["dropout"], h.shape)
        if c.get("recurrent", 0) > 0:
            h, finals = manual_layer(c, layer, k, h)
        else:
            h, finals = layer(h)
    if c["output"] == "sequence":
        if c["output_p"] > 0:
            h = h * time_major_mask(c, 2, c["output_p"], h.shape)
        out = head(h)
    else:
        hn = finals[0] if c["cell"] == "lstm" else finals
        feat = torch.cat([hn[-dirs + d] for d in range(dirs)], dim=1)
        if c["output_p"] > 0:
            m = mask(c["seed"], c["step"], 2, c["output_p"], n * d_top).reshape(n, d_top)
            feat = feat * m
        out = head(feat)
    if c["loss"] == "ce":
        shape = (n, t) if c["output"] == "sequence" else (n,)
        y = torch.randint(0, c["out"], shape)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, c["out"]), y.reshape(-1))
    else:
        y = torch.randn(n, c["out"])
        loss = torch.nn.functional.mse_loss(out, y)
    loss.backward()
    # Our names.
    weights, grads = {}, {}
    named = [("head." + k, v) for k, v in head.named_parameters()]
    if embed:
        named.append(("embed.weight", embed.weight))
    for k, layer in enumerate(layers):
        for name, v in layer.named_parameters():
            named.append((f"rnn.{name.replace('_l0', f'_l{k}')}", v))
    for name, v in named:
        weights[name] = v.detach().clone().contiguous()
        grads["grad." + name] = v.grad.detach().clone().contiguous()
    meta = {"recurrent": json.dumps({
        "cell": c["cell"], "output": c["output"],
        "dropout": {"dropout": c["dropout"], "input": c["input"], "output": c["output_p"],
                    "recurrent": c.get("recurrent", 0.0), "seed": c["seed"]}})}
    os.makedirs(folder, exist_ok=True)
    save_file(weights, f"{folder}/model.safetensors", metadata=meta)
    save_file({"x": x.contiguous(), "y": y.contiguous()}, f"{folder}/data.safetensors")
    grads["loss"] = loss.detach().reshape(1)
    save_file(grads, f"{folder}/expected.safetensors")
    with open(f"{folder}/case.json", "w") as f:
        json.dump(c, f, indent=1)


if __name__ == "__main__":
    out = sys.argv[1]
    for c in CASES:
        run(c, os.path.join(out, c["name"]))
        print("wrote", c["name"])
