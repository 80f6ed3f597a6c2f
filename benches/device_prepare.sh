#!/usr/bin/env bash
# Builds what benches/device_run.sh carries to the GPU machine into .devrun/
# (ignored by git; name it and .gl in the run's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.devrun/' .git/info/exclude || echo /.devrun/ >> .git/info/exclude
cargo build --release --bins --examples
cargo test --release --test gpu_parity --test gpu_step_tile --no-run 2>&1 | tail -2
rm -rf .devrun && mkdir -p .devrun/interop
cp target/release/recurrent target/release/examples/mnist .devrun/
for t in gpu_parity gpu_step_tile; do
  cp "$(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -1)" .devrun/$t
done
# Models trained by the CLI, with their data and our predictions, for tests/pytorch/interop.py.
for c in lstm-2layer-bidir-seq-ce gru-bidir-lengths-seq-ce rnn-tanh-seq-mse embed-lstm-lengths-last-ce gru-last-ce; do
  d=tests/golden/$c
  loss=$(python3 -c "import json;print(json.load(open('$d/case.json'))['loss'])")
  .devrun/recurrent train --device cpu --model $d/model.safetensors --data $d/data.safetensors --loss $loss \
    --optimizer adam --lr 0.01 --batch-size 2 --epochs 3 --seed 3 --save .devrun/interop/$c.model.safetensors >/dev/null
  cp $d/data.safetensors .devrun/interop/$c.data.safetensors
  .devrun/recurrent predict --device cpu --model .devrun/interop/$c.model.safetensors --data $d/data.safetensors \
    --output .devrun/interop/$c.output.safetensors >/dev/null
done
du -sh .devrun .gl
