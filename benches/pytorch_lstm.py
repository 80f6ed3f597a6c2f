#!/usr/bin/env python3
"""The `recurrent bench` suites in PyTorch, with the same JSON, so that every
comparison is one command on one machine.

  python3 benches/pytorch_lstm.py --suite deepbench --json pytorch.json            # cuDNN if a GPU is present
  python3 benches/pytorch_lstm.py --device cpu --threads 2 --suite mnist --json cpu.json

What is timed (as `recurrent bench` does): the recurrent stack alone, no head.
forward_ms: `lstm(x)` under no_grad; train_ms: `y, _ = lstm(x); y.sum().backward()`
with x requiring grad (input gradient and every weight gradient), GPU synchronised
inside the timing. Medians over --reps runs after warm-up. TF32 is off, so cuDNN
does FP32 arithmetic like our kernels.
"""
import argparse, json, statistics, time
import torch


def suite(name):
    if name == "deepbench":
        sizes = [(h, h, b, 25) for h in (512, 1024, 2048, 4096) for b in (16, 32, 64, 128)]
        sizes += [(1536, 1536, b, 50) for b in (8, 16, 32)]
        sizes += [(256, 256, b, 150) for b in (16, 32, 64)]
        return sizes
    if name == "mnist":
        return [(28, 128, 32, 28), (512, 512, 64, 25)]
    if name == "hidden":
        return [(h, h, 32, 25) for h in (64, 128, 256, 512, 1024)]
    raise SystemExit(f"unknown suite {name}")


def bench(cell, i, h, b, t, layers, device, reps):
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    m = cls(i, h, num_layers=layers, batch_first=True).to(device)
    x = torch.rand(b, t, i, device=device) * 2 - 1
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def fwd():
        with torch.no_grad():
            m(x)

    def train():
        xg = x.detach().requires_grad_(True)
        for p in m.parameters():
            p.grad = None
        y, _ = m(xg)
        y.sum().backward()

    out = []
    for fn in (fwd, train):
        for _ in range(3):
            fn()
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        out.append(statistics.median(times))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="deepbench")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    adapter = torch.cuda.get_device_name() + f" cuDNN {torch.backends.cudnn.version()}" if device == "cuda" else f"{torch.get_num_threads()} threads"
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[a.cell]
    rows = []
    print(f"{'device':<6} {'cell':<5} {'I':>5} {'H':>5} {'B':>5} {'T':>5} {'forward_ms':>12} {'train_ms':>12} {'GFLOP/s':>9}", flush=True)
    for (i, h, b, t) in [size for name in a.suite.split(",") for size in suite(name)]:
        f, tr = bench(a.cell, i, h, b, t, a.layers, device, a.reps)
        gflops = 3 * 2 * gates * h * h * b * t * a.layers / (tr * 1e-3) / 1e9
        rows.append(dict(device="pytorch-" + device, adapter=adapter, cell=a.cell, input=i, hidden=h, batch=b, steps=t,
                         layers=a.layers, forward_ms=f, train_ms=tr, gflops=gflops))
        print(f"{device:<6} {a.cell:<5} {i:>5} {h:>5} {b:>5} {t:>5} {f:>12.3f} {tr:>12.3f} {gflops:>9.1f}", flush=True)
    json.dump({"results": rows}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
