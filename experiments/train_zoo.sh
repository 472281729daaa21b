#!/usr/bin/env bash
# The zoo table of docs/results.md: each zoo model trained by `mcompress train --arch M --seed 0`
# with its default settings on $THREADS threads (default 1), unless its file already exists
# (FORCE=1 retrains), then reported from the file itself: stored values, epochs, and the test
# accuracy the training stage recorded in the file's history. Stored values count batchnorm's
# running statistics too. EPOCHS=N and LIMIT=N (the first N images, less the 10% validation
# split) shorten the training of the larger graph models on a small machine.
# usage: [FORCE=1] [EPOCHS=N] [LIMIT=N] experiments/train_zoo.sh [OUTDIR] [MODELS...]
#        (default: runs/zoo, mlp lenet5 convnet resnet8)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/zoo}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp lenet5 convnet resnet8)
mc=build/apps/mcompress
threads=${THREADS:-1}
export OPENBLAS_NUM_THREADS=$threads
mkdir -p "$out"
declare -A floor=([mlp]=88.5 [lenet5]=89.5 [convnet]=91.5 [resnet8]=91.5)  # the zoo issue's bars
echo "| model | stored values | epochs | test accuracy (%) | floor (%) |"
echo "| --- | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
  if [ "${FORCE:-0}" = 1 ] || [ ! -f "$out/$m.h5" ]; then
    "$mc" train --arch "$m" --seed 0 --threads "$threads" --quiet --force --out "$out/$m.h5" \
      ${EPOCHS:+--epochs "$EPOCHS"} --limit "${LIMIT:-0}" >/dev/null
  fi
  params=$("$mc" inspect "$out/$m.h5" | awk '$1 == "total" {print $2}')
  read -r epochs accuracy < <("$mc" inspect --history "$out/$m.h5" | grep '^  {' | head -1 |
                              jq -r '"\(.epochs | length) \(.metrics.test_accuracy)"')
  awk -v m="$m" -v p="$params" -v e="$epochs" -v a="$accuracy" -v f="${floor[$m]:--}" \
      'BEGIN { printf "| %s | %s | %s | %.2f | %s |\n", m, p, e, a * 100, f }'
done
