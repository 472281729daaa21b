#!/usr/bin/env bash
# Trains each zoo model with the default settings of `mcompress train` and prints a Markdown
# table of test accuracy and training time (docs/results.md, "Reference accuracy").
# usage: experiments/train_zoo.sh [OUTDIR] [MODELS...]   (default: runs/zoo, mlp lenet5 convnet resnet8)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/zoo}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp lenet5 convnet resnet8)
mc=build/apps/mcompress
mkdir -p "$out"
echo "| model | parameters | epochs | test accuracy (%) | training time | threads |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
  row=$("$mc" train --arch "$m" --seed 0 --quiet --force --out "$out/$m.h5" | awk -v m="$m" '$1 == m')
  read -r name params epochs best val test loss secs <<<"$row"
  echo "| $name | $params | $epochs | $test | $secs | $(nproc) |"
done
