#!/usr/bin/env python3
"""Loads a seq2seq checkpoint that `recurrent` wrote into the PyTorch reference model
(tests/seq2seq/generate.py's Seq2Seq, `load_state_dict(strict=True)`), runs it on a data file,
and compares its teacher-forced logits with the ones `recurrent predict` wrote.

Usage: seq2seq_load_in_pytorch.py MODEL.safetensors DATA.safetensors LOGITS.safetensors
  (needs torch and safetensors; the configuration comes from the checkpoint's metadata and
  tensor shapes). Exits 1 if any logit differs by more than 1e-4 (plus 1e-4 relative).
"""
import json, os, sys
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "seq2seq"))
from generate import Seq2Seq  # noqa: E402


def config(path, w):
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["recurrent"])
    gh, h = w["encoder.weight_hh_l0"].shape
    return {
        "cell": meta["cell"],
        "nonlinearity": meta.get("nonlinearity", "tanh"),
        "attention": meta["attention"],
        "src_vocab": w["src_embed.weight"].shape[0],
        "tgt_vocab": w["tgt_embed.weight"].shape[0],
        "embed": w["src_embed.weight"].shape[1],
        "hidden": h,
        "layers": sum(1 for k in w if k.startswith("encoder.weight_ih_l") and not k.endswith("_reverse")),
        "bidirectional": "encoder.weight_ih_l0_reverse" in w,
    }


def main(model_path, data_path, logits_path):
    w = load_file(model_path)
    c = config(model_path, w)
    m = Seq2Seq(c)
    m.load_state_dict(w, strict=True)
    d = load_file(data_path)
    lengths = d.get("src_lengths", torch.full((d["src"].shape[0],), d["src"].shape[1]))
    with torch.no_grad():
        out = m(d["src"], lengths, d["tgt_in"])
    ours = load_file(logits_path)["output"]
    diff = (out - ours).abs().max().item()
    ok = torch.allclose(out, ours, atol=1e-4, rtol=1e-4)
    print(f"{model_path}: {c['cell']} {c['attention']} layers {c['layers']} bidirectional {c['bidirectional']}: "
          f"PyTorch loaded it; logits {list(out.shape)}, max |difference| {diff:.2e}: {'ok' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
