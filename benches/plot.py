#!/usr/bin/env python3
"""Plots training time against hidden size (the `hidden` suite) from the JSON
files of `recurrent bench` and `benches/pytorch_lstm.py`, as an SVG with no
dependencies. Usage: plot.py OUT.svg FILE.json [FILE.json ...]"""
import json, math, sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def series(files):
    out = {}
    for f in files:
        for r in json.load(open(f))["results"]:
            if r["batch"] != 32 or r["steps"] != 25 or r["input"] != r["hidden"]:
                continue
            label = {"cpu": "recurrent, CPU path", "gpu": "recurrent, GPU path"}.get(r["device"], r["device"].replace("pytorch-cuda", "PyTorch cuDNN").replace("pytorch-cpu", "PyTorch CPU"))
            out.setdefault(label, []).append((r["hidden"], r["train_ms"]))
    return {k: sorted(v) for k, v in out.items()}


def main(path, files):
    s = series(files)
    W, H, L, R, T, B = 640, 420, 70, 190, 30, 50
    xs = [h for v in s.values() for h, _ in v]
    ys = [t for v in s.values() for _, t in v]
    x0, x1 = math.log2(min(xs)), math.log2(max(xs))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    X = lambda h: L + (math.log2(h) - x0) / max(x1 - x0, 1e-9) * (W - L - R)
    Y = lambda t: H - B - (math.log10(t) - y0) / max(y1 - y0, 1e-9) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">LSTM training step (forward + backward), B=32, T=25, I=H</text>']
    for e in range(y0, y1 + 1):
        y = Y(10 ** e)
        o.append(f'<line x1="{L}" x2="{W-R}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{L-8}" y="{y+4}" text-anchor="end">{10**e:g} ms</text>')
    for h in sorted(set(xs)):
        o.append(f'<line x1="{X(h)}" x2="{X(h)}" y1="{T}" y2="{H-B}" stroke="#eee"/><text x="{X(h)}" y="{H-B+16}" text-anchor="middle">{h}</text>')
    o.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">hidden size H (log scale)</text>')
    for i, (label, pts) in enumerate(sorted(s.items())):
        c = COLORS[i % len(COLORS)]
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (c, " ".join(f"{X(h)},{Y(t)}" for h, t in pts)))
        o += [f'<circle cx="{X(h)}" cy="{Y(t)}" r="3" fill="{c}"/>' for h, t in pts]
        o.append(f'<rect x="{W-R+12}" y="{T+10+i*20}" width="12" height="12" fill="{c}"/><text x="{W-R+30}" y="{T+20+i*20}">{label}</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
