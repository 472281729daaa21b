#!/usr/bin/env bash
# One training epoch (54000 Fashion-MNIST images, batch 128, Adam) of each zoo model in
# `mcompress train` and in PyTorch's Python front end (experiments/pytorch_epoch.py, Debian's
# python3-torch), same thread count, interleaved (ours, theirs, ours, theirs) on the same machine,
# best of two each. LIMIT=N trains on the first N images only (less the 10% validation split),
# for the larger graph models on a small machine.
# usage: [LIMIT=N] experiments/epoch_time.sh [THREADS] [MODELS...]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp lenet5 convnet resnet8)
export OPENBLAS_NUM_THREADS=$threads
limit=${LIMIT:-0}
images=$([ "$limit" -gt 0 ] && echo "$limit" || echo 60000)
echo "| model | threads | images | mcompress epoch incl. validation (s) | PyTorch epoch, training only (s) | PyTorch / mcompress |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
  ours=1e9
  theirs=1e9
  for round in 1 2; do
    t=$(build/apps/mcompress train --arch "$m" --epochs 1 --threads "$threads" --force \
          --limit "$limit" \
          --out "/tmp/epoch-$m.h5" 2>&1 | awk '/^epoch 1\/1/ {gsub("s","",$NF); print $NF}')
    ours=$(awk -v a="$ours" -v b="$t" 'BEGIN {print (b < a ? b : a)}')
    t=$(/usr/bin/python3 experiments/pytorch_epoch.py "$m" "$threads" "$images" |
          sed 's/.*epoch_seconds=//')
    theirs=$(awk -v a="$theirs" -v b="$t" 'BEGIN {print (b < a ? b : a)}')
  done
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", b / a}')
  echo "| $m | $threads | $images | $ours | $theirs | ${ratio}x |"
done
