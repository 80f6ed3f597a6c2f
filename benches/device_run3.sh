#!/usr/bin/env bash
# Third prepared run (for the next session with a GPU; `benches/device_prepare.sh` first,
# carry .devrun and .gl): the step-tile tests on the GPU, then the autotuner off (the kernels measured in the first run)
# against on (GEMM configurations, gemm_wide among them, and step tiles measured per
# shape), beside cuDNN; per-kernel profiles at H=1024 and the mnist size; a sweep of
# the step kernels' tile (RECURRENT_STEP_TILE units,rows,chunk,rb: rb = batch rows per
# invocation); the f16 copy of W_hh (bench --f16) against f32; the CPU path against
# PyTorch on 2 cores, interleaved; the main job on the GPU. Most telling first. Each
# part has a timeout, capped so that the whole run stays within about 10 minutes
# (`lim`); parts print their start time.
set -u
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json PYTHONUNBUFFERED=1
r=.devrun/recurrent
# lim N: N seconds, or what is left of the run's 570 s if less (at least 5).
lim() { local l=$((570 - SECONDS)); [ "$l" -lt 5 ] && l=5; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
{
  # Every kind of step tile the tuner may pick (register blocks, units per
  # invocation, K split, direct, persistent) against the CPU path and for the
  # same bits, on this GPU's driver: a memory-ordering bug would show here, not
  # on lavapipe.
  echo "=== step tile correctness on this GPU"
  RECURRENT_REQUIRE_GPU=1 timeout $(lim 60) .devrun/gpu_step_tile --test-threads 1 2>&1 | grep -vE '^test .* ok$' | tail -8
  echo "=== gpu, autotune off, at ${SECONDS}s"
  RECURRENT_AUTOTUNE=0 timeout $(lim 120) $r bench --device gpu --suite deepbench,mnist --reps 3 --json "$OUT/gpu-fixed.json"
  echo "=== cudnn, at ${SECONDS}s"
  timeout $(lim 90) python3 benches/pytorch_lstm.py --device cuda --suite deepbench,mnist --reps 5 --json "$OUT/pytorch-gpu.json"
  echo "=== gpu, autotune on (GEMM configurations and step tiles measured per shape), at ${SECONDS}s"
  RECURRENT_AUTOTUNE=1 timeout $(lim 200) $r bench --device gpu --suite deepbench,mnist --reps 3 --show-tuning --json "$OUT/gpu-tuned.json"
  echo "=== profile (H=1024 B=64 T=25, then the mnist size), at ${SECONDS}s"
  timeout $(lim 30) $r bench --device gpu --cell lstm --input 1024 --hidden 1024 --batch 64 --steps 25 --reps 3 --profile --json "$OUT/gpu-profile-h1024.json"
  timeout $(lim 30) $r bench --device gpu --suite mnist --reps 3 --profile --json "$OUT/gpu-profile.json"
  echo "=== step tile sweep (autotune off; 16,16,32,1 is the default), at ${SECONDS}s"
  # At most ~100 s: each size has its own timeout, and no new tile starts after 100 s.
  sweep0=$SECONDS
  # Persistent tiles (one workgroup a direction runs every step): the small sizes only.
  for tile in 16,16,32,1 16,16,32,1,persist 128,8,8,4,persist 32,8,16,4,persist 16,16,32,4 16,16,32,4,ub=2 32,1,7,8,8,direct 8,8,16,1,4; do
    [ $((SECONDS - sweep0)) -gt 100 ] && { echo "sweep: out of time before $tile"; break; }
    echo "--- tile $tile"
    RECURRENT_STEP_TILE=$tile RECURRENT_AUTOTUNE=0 timeout $(lim 12) $r bench --device gpu --suite mnist --reps 3 --json "$OUT/steptile-$tile-mnist.json"
    case $tile in *persist) ;; *)
    RECURRENT_STEP_TILE=$tile RECURRENT_AUTOTUNE=0 timeout $(lim 15) $r bench --device gpu --cell lstm --input 2048 --hidden 2048 --batch 64 --steps 25 --reps 3 --json "$OUT/steptile-$tile-h2048.json" ;;
    esac
    RECURRENT_STEP_TILE=$tile RECURRENT_AUTOTUNE=0 timeout $(lim 10) $r bench --device gpu --cell lstm --input 256 --hidden 256 --batch 32 --steps 150 --reps 3 --json "$OUT/steptile-$tile-h256.json"
  done
  python3 benches/steptile_table.py "$OUT"/steptile-*.json
  echo "=== gpu, autotune off, f16 W_hh, at ${SECONDS}s"
  RECURRENT_AUTOTUNE=0 timeout $(lim 100) $r bench --device gpu --suite deepbench,mnist --reps 3 --f16 --json "$OUT/gpu-fixed-f16.json"
  echo "=== cpu vs pytorch, cores 0-1, at ${SECONDS}s"
  REPS=6 BIN=$r timeout $(lim 80) taskset -c 0,1 benches/cpu_compare.sh "$OUT/cpu" 2 mnist 2
  echo "=== mnist gpu, at ${SECONDS}s"
  timeout $(lim 40) .devrun/mnist --device gpu --epochs 10
  echo "=== tables, at ${SECONDS}s"
  python3 benches/compare.py "$OUT/gpu-fixed.json" "$OUT/pytorch-gpu.json" --label-ours "fixed" --label-theirs cuDNN
  python3 benches/compare.py "$OUT/gpu-tuned.json" "$OUT/pytorch-gpu.json" --label-ours "tuned" --label-theirs cuDNN
  python3 benches/compare.py "$OUT/gpu-fixed-f16.json" "$OUT/gpu-fixed.json" --label-ours "f16 W_hh" --label-theirs "f32"
  echo "=== done"
} 2>&1 | tee "$OUT/log.txt"
