#!/usr/bin/env bash
# Installs what is missing, builds the CLI, trains the default model on Fashion-MNIST (cached
# in runs/zoo after the first run), quantizes it to int8 (static, calibrated, best observer)
# and prints the results table: accuracy, file size and latency of fp32 vs int8, measured now.
# ARCH=convnet scripts/demo.sh picks another zoo model; THREADS=2 another thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target mcompress
arch=${ARCH:-lenet5}
threads=${THREADS:-1}
experiments/quant_table.py --models "$arch" --modes fp16 int8-static --threads "$threads"
echo
build/apps/mcompress inspect "runs/quant/$arch-int8-static.h5"
