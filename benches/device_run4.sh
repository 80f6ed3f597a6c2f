#!/usr/bin/env bash
# The prepared device run (issue 20, item 1): at most ~5 minutes on a lent
# NVIDIA GPU, most telling first, a timeout on every part. Prepare with
# `benches/device_prepare.sh` here, then `run` this with carry [".devrun", ".gl"].
# Writes into $OUT: log.txt, clocks.csv, recurrent-gpu.json, pytorch-gpu.json,
# burn-gpu.json (if the peer was carried), profiles, stream.md.
#
# What it answers (BENCHMARKS.md and issue 20's suspects):
#  1. correctness of every step-tile kind on this driver (a memory-ordering bug
#     shows on real GPUs, not on lavapipe);
#  2. per-kernel profiles at the MNIST size and H1024 B64 T25: where a step's time goes;
#     2b. the same with unchecked shader modules (RECURRENT_SHADER_CHECKS=unchecked:
#     no loop bounding, no index clamping), the first suspect;
#  3. the DeepBench suite + MNIST layer against cuDNN FP32 (TF32 off), one sitting;
#  4. Burn's LSTM on the same card and sizes (if carried);
#  3c. recurrent dropout's cost at the MNIST sizes (issue 17: fused, so about nothing);
#  5. streaming, one step a call, 1 and 64 streams (issue 16's figures);
#  5a. the MNIST example, 2 epochs, the training set kept on the GPU against
#     every batch uploaded (issue 20 item 6);
#  5b. seq2seq (issue 18): the dates example on the GPU path (one epoch of 10,000
#     pairs, held-out exact match, seconds an epoch) beside PyTorch on CUDA, same split;
#  5c. GEMMs specialised to their operands (RECURRENT_GEMM_SPECIALISE=1, issue 20
#     item 3): the suite again, and the profile at H1024;
#  5d. persistent grid tiles (persist=8, issue 20 item 4) at the MNIST sizes
#     (part 1 also checks their bits against the per-step kernels on this GPU);
#  6. GPU clocks and utilisation every 200 ms throughout.
#  7. (if time is left) the suite again with unchecked shaders.
#  2c. µs per dispatch of a trivial kernel (1000 dependent dispatches in one
#     pass, and in 1000 passes) and GEMM TFLOP/s alone at 4096^3 and the H2048
#     B64 shapes, the fixed configuration beside gemm_wide (`bench --kernels`);
set -u
cd "$(dirname "$0")/.."
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/devout}; mkdir -p "$OUT"
r=.devrun/recurrent
for f in .devrun/*.xz .devrun/*/*.xz; do [ -e "$f" ] && xz -d -f "$f"; done
chmod +x .devrun/* 2>/dev/null
# lim N: N seconds, or what is left of the run's 290 s if less (at least 5).
budget=${BUDGET:-290}
lim() { local l=$((budget - SECONDS)); [ "$l" -lt 5 ] && l=5; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
clocks=""
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.csv"
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,utilization.gpu,power.draw --format=csv -lms 200 > "$OUT/clocks.csv" &
  clocks=$!
fi
{
  cat "$OUT/gpu.csv" 2>/dev/null
  $r info 2>&1 | head -20
  echo "=== 1. step tile correctness on this GPU, at ${SECONDS}s"
  RECURRENT_REQUIRE_GPU=1 timeout $(lim 40) .devrun/gpu_step_tile --test-threads 1 2>&1 | grep -vE '^test .* ok$' | tail -6
  echo "=== 2. profiles (mnist, then H1024 B64 T25), at ${SECONDS}s"
  timeout $(lim 25) $r bench --device gpu --suite mnist --reps 3 --profile --json "$OUT/gpu-profile-mnist.json"
  timeout $(lim 25) $r bench --device gpu --cell lstm --input 1024 --hidden 1024 --batch 64 --steps 25 --reps 3 --profile --json "$OUT/gpu-profile-h1024.json"
  echo "=== 2b. the same profiles, unchecked shaders, at ${SECONDS}s"
  RECURRENT_SHADER_CHECKS=unchecked timeout $(lim 20) $r bench --device gpu --suite mnist --reps 3 --profile --json "$OUT/gpu-profile-mnist-unchecked.json"
  RECURRENT_SHADER_CHECKS=unchecked timeout $(lim 20) $r bench --device gpu --cell lstm --input 1024 --hidden 1024 --batch 64 --steps 25 --reps 3 --profile --json "$OUT/gpu-profile-h1024-unchecked.json"
  echo "=== 2c. a dispatch's cost and GEMMs alone, at ${SECONDS}s"
  timeout $(lim 30) $r bench --device gpu --kernels --reps 5 | tee "$OUT/kernels.txt"
  echo "=== 3a. ours, deepbench + mnist (defaults), at ${SECONDS}s"
  timeout $(lim 100) $r bench --device gpu --suite deepbench,mnist --reps 3 --show-tuning --json "$OUT/recurrent-gpu.json"
  echo "=== 3b. cuDNN FP32, same sizes, at ${SECONDS}s"
  timeout $(lim 60) python3 benches/pytorch_lstm.py --device cuda --suite deepbench,mnist --reps 5 --json "$OUT/pytorch-gpu.json"
  echo "=== 3c. recurrent dropout's cost (masks fused in the step kernels), mnist sizes, at ${SECONDS}s"
  timeout $(lim 15) $r bench --device gpu --suite mnist --reps 5 --recurrent-dropout 0.25 --json "$OUT/recurrent-gpu-rdrop.json"
  echo "=== 4. Burn's LSTM (wgpu), at ${SECONDS}s"
  if [ -x .devrun/burn-lstm-bench ]; then
    rm -f "$OUT/burn-gpu.jsonl"
    for s in "28 128 32 28" "512 512 64 25" "1024 1024 64 25"; do
      # shellcheck disable=SC2086
      timeout $(lim 20) .devrun/burn-lstm-bench wgpu $s 5 "$OUT/burn-gpu.jsonl"
    done
    python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; json.dump({'results': rows}, open(sys.argv[2], 'w'), indent=1)" "$OUT/burn-gpu.jsonl" "$OUT/burn-gpu.json"
  else
    echo "burn-lstm-bench not carried"
  fi
  echo "=== 5. streaming, one step a call, at ${SECONDS}s"
  timeout $(lim 30) .devrun/stream_speed --calls 500 --no-cpu | tee "$OUT/stream.md"
  echo "=== 5a. mnist example, 2 epochs: the set kept on the GPU, then batches uploaded, at ${SECONDS}s"
  timeout $(lim 30) .devrun/mnist --device gpu --epochs 2 2>&1 | tail -4 | tee "$OUT/mnist-kept.txt"
  timeout $(lim 30) .devrun/mnist --device gpu --epochs 2 --upload-batches 2>&1 | tail -4 | tee "$OUT/mnist-uploaded.txt"
  echo "=== 5b. seq2seq: the dates example, one epoch, ours on the GPU then PyTorch on CUDA, at ${SECONDS}s"
  timeout $(lim 40) .devrun/dates --device gpu --epochs 1 --report-every 1 | tee "$OUT/seq2seq-dates-gpu.txt"
  timeout $(lim 30) python3 benches/seq2seq_pytorch.py --data .devrun/dates-split --cell lstm --embed 16 --hidden 64 \
    --bidirectional --lr 0.003 --attention general --epochs 1 --max-len 11 --device cuda | tee "$OUT/seq2seq-dates-cuda.txt"
  echo "=== 5c. ours, GEMMs specialised to their operands, deepbench + mnist, at ${SECONDS}s"
  RECURRENT_GEMM_SPECIALISE=1 timeout $(lim 60) $r bench --device gpu --suite deepbench,mnist --reps 3 --json "$OUT/recurrent-gpu-specialised.json"
  RECURRENT_GEMM_SPECIALISE=1 timeout $(lim 20) $r bench --device gpu --cell lstm --input 1024 --hidden 1024 --batch 64 --steps 25 --reps 3 --profile --json "$OUT/gpu-profile-h1024-specialised.json"
  echo "=== 5d. persistent grid step tiles (issue 20 item 4: P workgroups a direction, a barrier across them), mnist sizes, at ${SECONDS}s"
  RECURRENT_STEP_TILE=16,16,32,1,persist=8 timeout $(lim 20) $r bench --device gpu --suite mnist --reps 3 --show-tuning --json "$OUT/recurrent-gpu-grid8.json"
  RECURRENT_STEP_TILE=16,4,32,1,persist=8 timeout $(lim 20) $r bench --device gpu --suite mnist --reps 3 --show-tuning --json "$OUT/recurrent-gpu-grid8-tb4.json"
  echo "=== 7. ours, unchecked shaders, deepbench + mnist, at ${SECONDS}s"
  RECURRENT_SHADER_CHECKS=unchecked timeout $(lim 60) $r bench --device gpu --suite deepbench,mnist --reps 3 --json "$OUT/recurrent-gpu-unchecked.json"
  echo "=== tables, at ${SECONDS}s"
  python3 benches/compare.py "$OUT/recurrent-gpu.json" "$OUT/pytorch-gpu.json" --label-ours recurrent --label-theirs cuDNN
  [ -e "$OUT/recurrent-gpu-unchecked.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu-unchecked.json" "$OUT/recurrent-gpu.json" --label-ours unchecked --label-theirs checked
  [ -e "$OUT/recurrent-gpu-specialised.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu-specialised.json" "$OUT/recurrent-gpu.json" --label-ours specialised --label-theirs generic
  [ -e "$OUT/recurrent-gpu-grid8.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu-grid8.json" "$OUT/recurrent-gpu.json" --label-ours grid8 --label-theirs default
  [ -e "$OUT/recurrent-gpu-grid8-tb4.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu-grid8-tb4.json" "$OUT/recurrent-gpu.json" --label-ours grid8-tb4 --label-theirs default
  [ -e "$OUT/recurrent-gpu-rdrop.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu-rdrop.json" "$OUT/recurrent-gpu.json" --label-ours rdrop --label-theirs plain
  [ -e "$OUT/burn-gpu.json" ] && python3 benches/compare.py "$OUT/recurrent-gpu.json" "$OUT/burn-gpu.json" --label-ours recurrent --label-theirs Burn
  echo "=== done at ${SECONDS}s"
} 2>&1 | tee "$OUT/log.txt"
[ -n "$clocks" ] && kill "$clocks"
exit 0
