#!/usr/bin/env python3
"""Ratio table (markdown) of two bench JSON files with the same sizes:
compare.py OURS.json THEIRS.json [--label-ours X --label-theirs Y]
ratio = ours / theirs (below 1: ours is faster)."""
import argparse, json

ap = argparse.ArgumentParser()
ap.add_argument("ours")
ap.add_argument("theirs")
ap.add_argument("--label-ours", default="recurrent")
ap.add_argument("--label-theirs", default="PyTorch")
a = ap.parse_args()
key = lambda r: (r["cell"], r["input"], r["hidden"], r["batch"], r["steps"], r.get("layers", 1))
theirs = {key(r): r for r in json.load(open(a.theirs))["results"]}
print(f"| cell | I | H | B | T | {a.label_ours} fwd ms | {a.label_theirs} fwd ms | fwd ratio | {a.label_ours} train ms | {a.label_theirs} train ms | train ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
seen = set()
for r in json.load(open(a.ours))["results"]:
    k = key(r)
    if k not in theirs or k in seen:
        continue
    seen.add(k)
    t = theirs[k]
    print(f"| {r['cell']} | {r['input']} | {r['hidden']} | {r['batch']} | {r['steps']} | {r['forward_ms']:.3f} | {t['forward_ms']:.3f} | {r['forward_ms']/t['forward_ms']:.2f} | {r['train_ms']:.3f} | {t['train_ms']:.3f} | {r['train_ms']/t['train_ms']:.2f} |")
