#!/usr/bin/env python3
"""ONNX Runtime on the files `recurrent export` writes.

Usage: check_onnxruntime.py RECURRENT_BINARY [WORK_DIR]
Needs: pip install onnxruntime onnx numpy safetensors

For every reference case in tests/golden (PyTorch's numbers) and for random
models of other shapes (against `recurrent predict --device cpu`), in both
recurrences (`operators`: ONNX's LSTM/GRU/RNN with sequence_lens; `scan`: Scan
loops with masks), it exports the model with --with-lengths when the data has
lengths and --with-states when it has states (and, for random models, with
states always), checks the file with onnx.checker (full_check: types and
shapes inferred through the graph), runs it in ONNX Runtime and compares
`output`, `h_n` and `c_n`. Tolerance: 1e-5 absolute (golden, as in
tests/common/tolerance.rs GOLDEN_OUTPUT) and 1e-5 + 1e-5 relative against our
CPU path (FORWARD). Exits 1 if any comparison fails.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "golden")
RECURRENCES = ["operators", "scan"]


def recurrent(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{r.stderr}")


def export(binary, model, out, lengths, states, recurrence):
    args = [binary, "export", "--model", model, "--output", out, "--recurrence", recurrence]
    if lengths:
        args.append("--with-lengths")
    if states:
        args.append("--with-states")
    recurrent(args)


def run(path, data, lengths, states, lstm):
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {"x": data["x"]}
    n = data["x"].shape[0]
    if lengths:
        feed["lengths"] = data.get("lengths", np.full([n], data["x"].shape[1], np.int64)).astype(np.int64)
    if states:
        feed["h0"] = data["h0"]
        if lstm:
            feed["c0"] = data["c0"]
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def compare(what, got, want, atol, rtol):
    if got is None or got.shape != want.shape:
        print(f"FAIL {what}: shape {None if got is None else got.shape}, expected {want.shape}")
        return False
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    worst = float(np.max(np.abs(got - want))) if got.size else 0.0
    ok = got.shape == want.shape and bool(np.all(err <= 0))
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| {worst:.2e}")
    return ok


def golden(binary, work):
    ok = True
    for name in sorted(os.listdir(GOLDEN)):
        case = os.path.join(GOLDEN, name)
        if not os.path.exists(os.path.join(case, "expected.safetensors")):
            continue
        data = load_file(os.path.join(case, "data.safetensors"))
        expected = load_file(os.path.join(case, "expected.safetensors"))
        lstm = json.load(open(os.path.join(case, "case.json")))["cell"] == "lstm"
        lengths, states = "lengths" in data, "h0" in data
        for rec in RECURRENCES:
            path = os.path.join(work, f"{name}-{rec}.onnx")
            export(binary, os.path.join(case, "model.safetensors"), path, lengths, states, rec)
            got = run(path, data, lengths, states, lstm)
            outs = ["output"] + (["h_n"] + (["c_n"] if lstm else []) if states else [])
            for out in outs:
                ok &= compare(f"golden {name} ({rec}) {out}", got.get(out), expected[out], 1e-5, 0.0)
    return ok


def random_model(rng, cell, inp, hidden, layers, bidir, out, vocab):
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    dirs = 2 if bidir else 1
    k = 1.0 / np.sqrt(hidden)
    t = {}
    if vocab:
        t["embed.weight"] = rng.standard_normal((vocab, inp)).astype(np.float32)
    for l in range(layers):
        width = inp if l == 0 else hidden * dirs
        for sfx in ["", "_reverse"][:dirs]:
            t[f"rnn.weight_ih_l{l}{sfx}"] = rng.uniform(-k, k, (gates * hidden, width)).astype(np.float32)
            t[f"rnn.weight_hh_l{l}{sfx}"] = rng.uniform(-k, k, (gates * hidden, hidden)).astype(np.float32)
            t[f"rnn.bias_ih_l{l}{sfx}"] = rng.uniform(-k, k, (gates * hidden,)).astype(np.float32)
            t[f"rnn.bias_hh_l{l}{sfx}"] = rng.uniform(-k, k, (gates * hidden,)).astype(np.float32)
    t["head.weight"] = rng.uniform(-k, k, (out, hidden * dirs)).astype(np.float32)
    t["head.bias"] = rng.uniform(-k, k, (out,)).astype(np.float32)
    return t


def random_cases(binary, work):
    """Shapes beside the golden ones: T = 1, B = 1, odd H, ReLU, 3 layers."""
    rng = np.random.default_rng(5)
    shapes = []
    for cell in ["lstm", "gru", "rnn"]:
        shapes += [
            dict(cell=cell, nl="tanh", inp=4, hidden=13, layers=1, bidir=False, output="last", n=1, t=1, vocab=None, lengths=False),
            dict(cell=cell, nl="tanh", inp=3, hidden=11, layers=2, bidir=True, output="sequence", n=5, t=9, vocab=None, lengths=True),
            dict(cell=cell, nl="tanh", inp=6, hidden=7, layers=1, bidir=True, output="last", n=3, t=5, vocab=17, lengths=True),
            dict(cell=cell, nl="tanh", inp=2, hidden=1, layers=3, bidir=False, output="last", n=2, t=4, vocab=None, lengths=False),
        ]
    shapes += [
        dict(cell="rnn", nl="relu", inp=5, hidden=9, layers=2, bidir=True, output="sequence", n=4, t=6, vocab=None, lengths=True),
        dict(cell="rnn", nl="relu", inp=5, hidden=8, layers=1, bidir=False, output="last", n=4, t=6, vocab=None, lengths=False),
    ]
    ok = True
    for i, s in enumerate(shapes):
        label = f"{s['cell']} L{s['layers']}{' bi' if s['bidir'] else ''} {s['output']} {s['nl']} H{s['hidden']} N{s['n']} T{s['t']}{' len' if s['lengths'] else ''}{' V%d' % s['vocab'] if s['vocab'] else ''}"
        model = os.path.join(work, f"random{i}.safetensors")
        meta = {"recurrent": json.dumps({"cell": s["cell"], "nonlinearity": s["nl"], "output": s["output"]})}
        save_file(random_model(rng, s["cell"], s["inp"], s["hidden"], s["layers"], s["bidir"], 3, s["vocab"]), model, metadata=meta)
        n, t = s["n"], s["t"]
        data = {}
        if s["vocab"]:
            data["x"] = rng.integers(0, s["vocab"], (n, t)).astype(np.int64)
        else:
            data["x"] = rng.uniform(-1, 1, (n, t, s["inp"])).astype(np.float32)
        if s["lengths"]:
            data["lengths"] = np.array([t] + list(rng.integers(1, t + 1, n - 1)), np.int64)
        states = (s["layers"] * (2 if s["bidir"] else 1), n, s["hidden"])
        data["h0"] = rng.uniform(-1, 1, states).astype(np.float32)
        if s["cell"] == "lstm":
            data["c0"] = rng.uniform(-1, 1, states).astype(np.float32)
        data_path = os.path.join(work, f"random{i}-data.safetensors")
        save_file(data, data_path)
        pred = os.path.join(work, f"random{i}-pred.safetensors")
        recurrent([binary, "predict", "--model", model, "--data", data_path, "--output", pred, "--device", "cpu"])
        want = load_file(pred)
        for rec in RECURRENCES:
            path = os.path.join(work, f"random{i}-{rec}.onnx")
            export(binary, model, path, s["lengths"], True, rec)
            got = run(path, data, s["lengths"], True, s["cell"] == "lstm")
            for out in ["output", "h_n"] + (["c_n"] if s["cell"] == "lstm" else []):
                ok &= compare(f"random {label} ({rec}) {out}", got.get(out), want[out], 1e-5, 1e-5)
    return ok


def readme_example(binary, work):
    """The README's Python block ("Deploying with ONNX"), as written there, on a
    golden model (I5 H7, 3 classes) exported with --with-lengths."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Deploying with ONNX")[1].split("\n## ")[0]
    block = section.split("```python\n")[1].split("```")[0]
    folder = os.path.join(work, "readme")
    os.makedirs(folder, exist_ok=True)
    model = os.path.join(GOLDEN, "lstm-last-ce", "model.safetensors")
    export(binary, model, os.path.join(folder, "model.onnx"), True, False, "operators")
    here = os.getcwd()
    os.chdir(folder)
    try:
        scope = {}
        exec(block, scope)
    finally:
        os.chdir(here)
    ok = scope["output"].shape == (2, 3)
    print(f"{'ok  ' if ok else 'FAIL'} the README's Python example: output {scope['output'].shape}")
    return ok


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="recurrent-onnx-")
    os.makedirs(work, exist_ok=True)
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}; files in {work}")
    ok = golden(binary, work)
    ok &= random_cases(binary, work)
    ok &= readme_example(binary, work)
    if not ok:
        sys.exit("some exports disagree (FAIL lines above)")
    print("every export agrees")


if __name__ == "__main__":
    main()
