#!/usr/bin/env bash
# The CPU path against PyTorch's CPU nn.LSTM on this machine, interleaved:
# ROUNDS rounds of (ours, PyTorch) per suite, each a median over REPS runs, so
# that drifts in the machine's speed (shared hosts) hit both sides alike.
#   benches/cpu_compare.sh OUT_DIR [ROUNDS] [SUITES] [THREADS]
# Needs target/release/recurrent (cargo build --release) and a python3 with torch
# (PYTHON=...). Prints the ratio table (benches/compare.py) at the end.
set -euo pipefail
out=${1:?usage: cpu_compare.sh OUT_DIR [ROUNDS] [SUITES] [THREADS]}
rounds=${2:-5}
suites=${3:-mnist,hidden}
threads=${4:-2}
reps=${REPS:-20}
py=${PYTHON:-python3}
bin=${BIN:-target/release/recurrent}
mkdir -p "$out"
for r in $(seq "$rounds"); do
  RAYON_NUM_THREADS=$threads "$bin" bench --device cpu --suite "$suites" --reps "$reps" \
    --json "$out/ours-$r.json" > /dev/null
  "$py" benches/pytorch_lstm.py --device cpu --threads "$threads" --suite "$suites" \
    --reps "$reps" --json "$out/pytorch-$r.json" > /dev/null
  echo "round $r of $rounds done" >&2
done
# Per-size medians over the rounds, one file a side (for benches/plot.py).
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
for side in ("ours", "pytorch"):
    rounds = [json.load(open(f))["results"] for f in sorted(glob.glob(f"{out}/{side}-[0-9]*.json"))]
    merged = []
    for i, r in enumerate(rounds[0]):
        r = dict(r)
        for f in ("forward_ms", "train_ms", "gflops"):
            if f in r:
                r[f] = statistics.median(rs[i][f] for rs in rounds)
        merged.append(r)
    json.dump({"results": merged}, open(f"{out}/{side}-median.json", "w"), indent=1)
PY
python3 benches/compare.py --ours "$out"/ours-[0-9]*.json --theirs "$out"/pytorch-[0-9]*.json \
  --label-ours "recurrent CPU" --label-theirs "PyTorch CPU"
