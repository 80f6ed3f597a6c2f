#!/usr/bin/env bash
# Builds what the device runs (benches/device_run4.sh, the 5-minute one) carry
# to the GPU machine into .devrun/ (packed with xz), and the Vulkan loader
# into .gl/ (both ignored by git; name them in the run's `carry`). With BURN=path to a built
# `burn-lstm-bench` (../shared/peers/burn-lstm, `cargo build --release`
# outside the project), the peer is carried too, stripped and packed.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.devrun/' .git/info/exclude || echo /.devrun/ >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >> .git/info/exclude
if ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1)
fi
cargo build --release --bins --examples
cargo test --release --test gpu_parity --test gpu_step_tile --no-run 2>&1 | tail -2
rm -rf .devrun && mkdir -p .devrun/interop
cp target/release/recurrent target/release/examples/mnist target/release/examples/stream_speed \
  target/release/examples/dates .devrun/
strip .devrun/recurrent .devrun/mnist .devrun/stream_speed .devrun/dates
# The dates example's split, for PyTorch on CUDA (part 5b): the example draws the same one there.
.devrun/dates --device cpu --epochs 1 --train 10000 --export .devrun/dates-split >/dev/null
if [ -n "${BURN:-}" ]; then
  cp "$BURN" .devrun/burn-lstm-bench && strip .devrun/burn-lstm-bench && xz -f -T2 .devrun/burn-lstm-bench
fi
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
# The working tree and what it carries travel within 64 MiB: the binaries and
# the split packed (device_run4.sh unpacks them).
xz -f -T2 .devrun/recurrent .devrun/mnist .devrun/stream_speed .devrun/dates \
  .devrun/gpu_parity .devrun/gpu_step_tile .devrun/dates-split/*.safetensors
du -sh .devrun .gl
