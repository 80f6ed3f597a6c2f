#!/usr/bin/env python3
"""Ratio table (markdown) of bench JSON files with the same sizes.

  compare.py OURS.json THEIRS.json [--label-ours X --label-theirs Y]
  compare.py --ours round*/ours.json --theirs round*/theirs.json

ratio = ours / theirs (below 1: ours is faster). With several files per side
(rounds of an interleaved run, benches/cpu_compare.sh), each figure is the
median over the rounds of the per-round medians, and the table adds the range
of the train ratio over the rounds (round i of ours against round i of theirs)."""
import argparse, json, statistics

ap = argparse.ArgumentParser()
ap.add_argument("pair", nargs="*", help="OURS.json THEIRS.json")
ap.add_argument("--ours", nargs="+", default=[])
ap.add_argument("--theirs", nargs="+", default=[])
ap.add_argument("--label-ours", default="recurrent")
ap.add_argument("--label-theirs", default="PyTorch")
a = ap.parse_args()
ours_files, theirs_files = a.ours, a.theirs
if a.pair:
    if len(a.pair) != 2 or ours_files or theirs_files:
        ap.error("give OURS.json THEIRS.json, or --ours ... --theirs ...")
    ours_files, theirs_files = [a.pair[0]], [a.pair[1]]
if not ours_files or len(ours_files) != len(theirs_files):
    ap.error("as many files for --ours as for --theirs")

key = lambda r: (r["cell"], r["input"], r["hidden"], r["batch"], r["steps"], r.get("layers", 1))


def load(files):
    rounds = []
    for f in files:
        rounds.append({key(r): r for r in json.load(open(f))["results"]})
    return rounds


ours, theirs = load(ours_files), load(theirs_files)
order = [k for k in ours[0] if all(k in r for r in ours + theirs)]
med = lambda rounds, k, f: statistics.median(r[k][f] for r in rounds)
multi = len(ours) > 1
head = f"| cell | I | H | B | T | {a.label_ours} fwd ms | {a.label_theirs} fwd ms | fwd ratio | {a.label_ours} train ms | {a.label_theirs} train ms | train ratio |"
print(head + (" train ratio range |" if multi else ""))
print("|---" * (12 if multi else 11) + "|")
for k in order:
    of, tf = med(ours, k, "forward_ms"), med(theirs, k, "forward_ms")
    ot, tt = med(ours, k, "train_ms"), med(theirs, k, "train_ms")
    cell, i, h, b, t, _ = k
    line = f"| {cell} | {i} | {h} | {b} | {t} | {of:.3f} | {tf:.3f} | {of/tf:.2f} | {ot:.3f} | {tt:.3f} | {ot/tt:.2f} |"
    if multi:
        ratios = [o[k]["train_ms"] / th[k]["train_ms"] for o, th in zip(ours, theirs)]
        line += f" {min(ratios):.2f}–{max(ratios):.2f} |"
    print(line)
