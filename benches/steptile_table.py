#!/usr/bin/env python3
"""Markdown table of a step-tile sweep (benches/device_run3.sh):

  steptile_table.py DIR/steptile-<units,rows,chunk,rb>-<name>.json ...

One row per (size, tile): forward and training ms, and the training time over the
default tile's (16,16,32,1) for the same size (below 1: faster)."""
import json, os, re, sys

rows = {}  # size -> {tile: (fwd, train)}
tiles = []
for f in sys.argv[1:]:
    m = re.match(r"steptile-([0-9,]+(?:,direct)?(?:,ub=[0-9]+)?(?:,persist)?)-", os.path.basename(f))
    if not m:
        continue
    tile = m.group(1)
    try:
        results = json.load(open(f))["results"]
    except (OSError, ValueError, KeyError) as e:
        print(f"{f}: {e}", file=sys.stderr)
        continue
    if tile not in tiles:
        tiles.append(tile)
    for r in results:
        size = (r["cell"], r["input"], r["hidden"], r["batch"], r["steps"])
        rows.setdefault(size, {})[tile] = (r["forward_ms"], r["train_ms"])

base = "16,16,32,1"
print("| cell | I | H | B | T | tile (units,rows,chunk,rb[,sk[,direct]][,ub=N][,persist]) | fwd ms | train ms | train / default |")
print("|---|---|---|---|---|---|---|---|---|")
for size in sorted(rows, key=lambda s: (s[2], s[3], s[4])):
    for tile in tiles:
        if tile not in rows[size]:
            continue
        fwd, train = rows[size][tile]
        ratio = f"{train / rows[size][base][1]:.2f}" if base in rows[size] else "-"
        print(f"| {' | '.join(map(str, size))} | {tile} | {fwd:.3f} | {train:.3f} | {ratio} |")
