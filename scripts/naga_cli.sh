#!/usr/bin/env bash
# Builds every shader module from its `// requires:` line (the files it lists,
# in order, then itself; a `// part:` file is not a module) and hands it to
# naga's command-line translator for SPIR-V, MSL and HLSL, one entry point at
# a time (as a pipeline is built: `--compact --entry-point E`), at the default
# override constants and, for the step kernels, at a non-default step tile.
# The same rule as src/gpu/registry.rs; tests/shaders.rs does this with naga
# the library. (Whole modules at once make naga 30.0 panic in
# process_overrides, on the unnamed overrides it makes for override-sized
# workgroup arrays; per entry point, as wgpu uses them, they translate.)
#
#   cargo install naga-cli --version '=30.0.0'   # the naga wgpu 30 uses
#   scripts/naga_cli.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../shaders"
out=${1:-$(mktemp -d)}
mkdir -p "$out"
command -v naga >/dev/null || { echo "naga not found: cargo install naga-cli --version '=30.0.0'" >&2; exit 2; }
n=0
for f in *.wgsl; do
  grep -q '^// part:' "$f" && continue
  req=$(sed -n 's|^// requires: *||p' "$f" | head -1)
  m="$out/${f%.wgsl}.module.wgsl"
  cat $req "$f" > "$m"
  overrides=("")
  grep -q '^override TJ' "$m" && overrides+=("--override TJ=32 --override TB=2 --override RB=2")
  entries=$(grep -A1 '^@compute' "$m" | sed -n 's/^fn \([a-z0-9_]*\).*/\1/p')
  for e in $entries; do
    for o in "${overrides[@]}"; do
      for ext in spv metal hlsl; do
        # shellcheck disable=SC2086
        naga --compact --entry-point "$e" $o "$m" "$out/$e.$ext" >/dev/null
        n=$((n + 1))
      done
    done
  done
  echo "ok  $f  (requires: ${req:-nothing}; entry points:" $entries")"
done
echo "$n translations by $(naga --version) in $out"
