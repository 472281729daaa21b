#!/usr/bin/env bash
# The Executor's per-step overhead at batch 1, two builds side by side in one run: the median
# latency of the same lenet5 and mlp files (fp32, and int8-static under the int8 policy) through
# the `mcompress eval` of an OLD and a NEW build, interleaved, best of ROUNDS (default 5)
# medians each, one thread. Prints new/old per case; below 1.00 the new build is faster.
#   experiments/executor_overhead.sh OLD_MCOMPRESS NEW_MCOMPRESS
# Example (the commit before the chain executor became the graph plan):
#   git worktree add /tmp/old <commit> && (cd /tmp/old && scripts/build.sh)
#   experiments/executor_overhead.sh /tmp/old/build/apps/mcompress build/apps/mcompress
set -euo pipefail
old=${1:?usage: executor_overhead.sh OLD_MCOMPRESS NEW_MCOMPRESS}
new=${2:?usage: executor_overhead.sh OLD_MCOMPRESS NEW_MCOMPRESS}
rounds=${ROUNDS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# An honest fp32: OpenBLAS's AVX-512 kernels where the CPU has them (bench/run.sh does the same).
if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi

for arch in mlp lenet5; do
  "$new" train --arch "$arch" --epochs 1 --limit 2000 --out "$work/$arch.h5" --threads 2 >/dev/null 2>&1
  "$new" quantize "$work/$arch.h5" --mode int8-static --limit 2000 --out "$work/$arch-int8.h5" \
    >/dev/null 2>&1
done

# The median batch-1 latency (ms) `eval --json` reports.
latency() {
  "$1" eval "$2" --limit 256 --latency-batch 1 --policy "$3" --threads 1 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["latency"][0]["median_ms"])'
}

printf '%-14s %-6s %10s %10s %8s\n' model policy old_ms new_ms new/old
for file in mlp lenet5 mlp-int8 lenet5-int8; do
  policy=fp32
  [[ $file == *-int8 ]] && policy=int8
  best_old=1e9 best_new=1e9
  for _ in $(seq "$rounds"); do
    best_old=$(python3 -c "print(min($best_old, $(latency "$old" "$work/$file.h5" $policy)))")
    best_new=$(python3 -c "print(min($best_new, $(latency "$new" "$work/$file.h5" $policy)))")
  done
  python3 -c "print('%-14s %-6s %10.4f %10.4f %8.2f' % ('$file', '$policy', $best_old, $best_new,
    $best_new / $best_old))"
done
