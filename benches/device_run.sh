#!/usr/bin/env bash
# The prepared command for a lent GPU machine (../shared/device/README.md):
# correctness on the real GPU first, then every comparison side by side in one
# run. Built here beforehand by benches/device_prepare.sh; results go to $OUT.
set -u
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export RECURRENT_REQUIRE_GPU=1 PYTHONUNBUFFERED=1
B=.devrun/recurrent
cpu2() { taskset -c 0,1 env RAYON_NUM_THREADS=2 "$@"; }
log() { echo "=== $* ($(date +%T))"; }
{
  log machine
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  lscpu | grep -E 'Model name|^CPU\(s\)'
  log info; $B info
  log "gpu parity tests on this GPU"; timeout 90 .devrun/gpu_parity --test-threads 1 2>&1 | grep -vE '^test .* ok$' | tail -20
  log "pytorch loads our checkpoints"; timeout 40 python3 tests/pytorch/interop.py .devrun/interop
  log "torch.optim reference"; python3 tests/pytorch/optim_reference.py > "$OUT/optim_reference.json" && echo written
  log "ours, gpu"; timeout 130 $B bench --device gpu --suite deepbench,mnist --reps 3 --json "$OUT/recurrent-gpu.json"
  log "cudnn"; timeout 60 python3 benches/pytorch_lstm.py --device cuda --suite deepbench,mnist,hidden --reps 5 --json "$OUT/pytorch-gpu.json"
  log "mnist main job, gpu"; timeout 70 .devrun/mnist --device gpu --epochs 10
  log "ours, cpu, 2 cores"; timeout 50 cpu2 $B bench --device cpu --suite mnist --reps 3 --json "$OUT/recurrent-cpu.json"
  log "pytorch, cpu, 2 cores"; timeout 50 cpu2 python3 benches/pytorch_lstm.py --device cpu --threads 2 --suite mnist --reps 3 --json "$OUT/pytorch-cpu.json"
  log "ours, gpu, hidden"; timeout 30 $B bench --device gpu --suite hidden --reps 3 --json "$OUT/recurrent-gpu-hidden.json"
  log "mnist main job, cpu path on 2 cores (1 epoch)"; timeout 30 cpu2 .devrun/mnist --device cpu --epochs 1
  log done
} 2>&1 | tee "$OUT/log.txt"
