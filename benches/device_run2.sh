#!/usr/bin/env bash
# Second prepared run: the CPU path before/after the AVX-512 and register-blocked
# per-step kernels (.devrun/recurrent-old vs .devrun/recurrent) beside PyTorch on the
# same 2 cores, and the sentiment example on the GPU.
set -u
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json PYTHONUNBUFFERED=1
c="taskset -c 0,1 env RAYON_NUM_THREADS=2"
{
  echo "=== old cpu"; timeout 40 $c .devrun/recurrent-old bench --device cpu --suite mnist --reps 5 --json "$OUT/old-cpu.json"
  echo "=== new cpu"; timeout 40 $c .devrun/recurrent bench --device cpu --suite mnist --reps 5 --json "$OUT/new-cpu.json"
  echo "=== pytorch cpu"; timeout 40 $c python3 benches/pytorch_lstm.py --device cpu --threads 2 --suite mnist --reps 5 --json "$OUT/pytorch-cpu.json"
  echo "=== new cpu hidden"; timeout 45 $c .devrun/recurrent bench --device cpu --suite hidden --reps 3 --json "$OUT/new-cpu-hidden.json"
  echo "=== mnist cpu"; timeout 30 $c .devrun/mnist --device cpu --epochs 1
  echo "=== sentiment gpu"; timeout 90 .devrun/sentiment --device gpu --epochs 4 --seed 7
  echo "=== done"
} 2>&1 | tee "$OUT/log.txt"
