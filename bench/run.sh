#!/usr/bin/env bash
# Runs a bench/ program with an honest fp32 baseline: OpenBLAS 0.3.21 does not know recent
# AVX-512 CPUs and falls back to its SSE3 kernels, 3.6x slower, so name the right ones.
# usage: bench/run.sh bench_quant [--threads N] [benchmark flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
program=$1
shift
if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
exec "build/bench/$program" "$@"
