#!/usr/bin/env bash
# Third prepared run (for the next session with a GPU; `benches/device_prepare.sh` first,
# carry .devrun and .gl): the GEMM autotuner off (the kernel measured in the first run)
# against on, beside cuDNN; the f16 copy of W_hh (bench --f16) against f32; per-kernel
# profiles (f32 and f16); the rewritten CPU path against PyTorch on 2 cores, interleaved;
# the main job on the GPU. About 10 minutes; each part has a timeout.
set -u
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json PYTHONUNBUFFERED=1
r=.devrun/recurrent
{
  echo "=== gpu, autotune off"
  RECURRENT_AUTOTUNE=0 timeout 120 $r bench --device gpu --suite deepbench,mnist --reps 3 --json "$OUT/gpu-fixed.json"
  echo "=== gpu, autotune off, f16 W_hh"
  RECURRENT_AUTOTUNE=0 timeout 120 $r bench --device gpu --suite deepbench,mnist --reps 3 --f16 --json "$OUT/gpu-fixed-f16.json"
  echo "=== gpu, autotune on"
  RECURRENT_AUTOTUNE=1 timeout 150 $r bench --device gpu --suite deepbench,mnist --reps 3 --show-tuning --json "$OUT/gpu-tuned.json"
  echo "=== cudnn"
  timeout 90 python3 benches/pytorch_lstm.py --device cuda --suite deepbench,mnist --reps 5 --json "$OUT/pytorch-gpu.json"
  echo "=== profile (mnist size)"
  timeout 40 $r bench --device gpu --suite mnist --reps 3 --profile --json "$OUT/gpu-profile.json"
  echo "=== profile (mnist size), f16 W_hh"
  timeout 40 $r bench --device gpu --suite mnist --reps 3 --profile --f16 --json "$OUT/gpu-profile-f16.json"
  echo "=== cpu vs pytorch, cores 0-1"
  REPS=10 BIN=$r timeout 120 taskset -c 0,1 benches/cpu_compare.sh "$OUT/cpu" 2 mnist 2
  echo "=== mnist gpu"
  timeout 40 .devrun/mnist --device gpu --epochs 10
  echo "=== tables"
  python3 benches/compare.py "$OUT/gpu-fixed.json" "$OUT/pytorch-gpu.json" --label-ours "fixed" --label-theirs cuDNN
  python3 benches/compare.py "$OUT/gpu-tuned.json" "$OUT/pytorch-gpu.json" --label-ours "tuned" --label-theirs cuDNN
  python3 benches/compare.py "$OUT/gpu-fixed-f16.json" "$OUT/gpu-fixed.json" --label-ours "f16 W_hh" --label-theirs "f32"
  echo "=== done"
} 2>&1 | tee "$OUT/log.txt"
