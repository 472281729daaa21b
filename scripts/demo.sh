#!/usr/bin/env bash
# Installs what is missing, builds the CLI and runs the default compression recipe
# (recipes/default.yaml) on Fashion-MNIST: train a LeNet-5 teacher (cached in runs/demo after
# the first run), distill it into lenet5-small, prune, quantize to int8, and print the table of
# every stage measured on the deployable runtime. THREADS=1 scripts/demo.sh sets the threads;
# RECIPE=recipes/other.yaml runs another recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target mcompress
mkdir -p runs/demo
recipe=${RECIPE:-recipes/default.yaml}
threads=${THREADS:-2}
export OPENBLAS_NUM_THREADS=$threads
build/apps/mcompress compress "$recipe" --threads "$threads" --force
