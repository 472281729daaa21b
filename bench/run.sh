#!/usr/bin/env bash
# Runs a bench/ program with an honest fp32 baseline: OpenBLAS 0.3.21 does not know recent
# AVX-512 CPUs and falls back to its SSE3 kernels, 3.6x slower, so name the right ones. OpenBLAS
# runs its own thread pool; it gets the same thread count as LibTorch (--threads=N, default 1).
# usage: bench/run.sh bench_quant|bench_sparse [--threads=N] [benchmark flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
program=$1
shift
threads=1
for arg in "$@"; do
  case "$arg" in --threads=*) threads=${arg#--threads=} ;; esac
done
if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
export OPENBLAS_NUM_THREADS=$threads
exec "build/bench/$program" "$@"
