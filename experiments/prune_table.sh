#!/usr/bin/env bash
# The pruning table of docs/results.md: each zoo model's fp32 file (experiments/train_zoo.sh)
# pruned by `mcompress prune` with the arguments below, then the dense and the pruned file
# evaluated on the 10000 Fashion-MNIST test images by `mcompress eval` (the deployable runtime),
# with latency at batch 1 and 64. Everything runs on $THREADS threads (default 1).
# usage: experiments/prune_table.sh [ZOO_DIR] [NAMES...]   (default runs/zoo, every row)
# Writes runs/prune/<name>.{h5,log}; prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
zoo=${1:-runs/zoo}
shift || true
only=("$@")
out=runs/prune
mc=build/apps/mcompress
threads=${THREADS:-1}
export OPENBLAS_NUM_THREADS=$threads
mkdir -p "$out"

# name | zoo model | allowed accuracy drop (points) | prune arguments
rows=(
  "mlp-global95|mlp|1.0|--scope global --target 0.95 --schedule gradual --finetune-epochs 10 --lr 1e-3"
  "mlp-global97|mlp|1.0|--scope global --target 0.97 --schedule gradual --finetune-epochs 30 --lr 2e-3"
  "lenet5-global90|lenet5|1.0|--scope global --target 0.9 --schedule gradual --finetune-epochs 10 --lr 1e-3"
  "lenet5-global95|lenet5|1.0|--scope global --target 0.95 --schedule gradual --finetune-epochs 20 --lr 1e-3"
  "convnet-filters50|convnet|1.5|--structured --target 0.5 --finetune-epochs 6 --lr 1e-3"
)

latency() {  # eval JSON, batch -> median ms
  jq -r --argjson b "$2" '.latency[] | select(.batch == $b) | .median_ms' <<<"$1"
}

echo "| run | model | prune arguments | sparsity | params (nonzero) | dense (%) | pruned (%) | Δ (points) | bound | holds | batch 1 ms dense → pruned | batch 64 ms dense → pruned |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
for row in "${rows[@]}"; do
  IFS='|' read -r name model bound args <<<"$row"
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then continue; fi
  # shellcheck disable=SC2086  # the arguments are words
  "$mc" prune "$zoo/$model.h5" $args --threads "$threads" --force --out "$out/$name.h5" >"$out/$name.log" 2>&1 ||
    { echo "prune failed, see $out/$name.log" >&2; exit 1; }
  dense=$("$mc" eval "$zoo/$model.h5" --json --threads "$threads")
  pruned=$("$mc" eval "$out/$name.h5" --json --threads "$threads")
  sparsity=$(awk '/^sparsity / {print $2}' "$out/$name.log")
  params=$(awk '$1 == "after" {print $4 " (" $5 ")"}' "$out/$name.log")
  awk -v n="$name" -v m="$model" -v a="$args" -v s="$sparsity" -v p="$params" -v bound="$bound" \
      -v d="$(jq .accuracy <<<"$dense")" -v q="$(jq .accuracy <<<"$pruned")" \
      -v d1="$(latency "$dense" 1)" -v q1="$(latency "$pruned" 1)" \
      -v d64="$(latency "$dense" 64)" -v q64="$(latency "$pruned" 64)" 'BEGIN {
        drop = (d - q) * 100
        printf "| %s | %s | `%s` | %s | %s | %.2f | %.2f | %+.2f | %.1f | %s | %.3f → %.3f | %.3f → %.3f |\n",
               n, m, a, s, p, d * 100, q * 100, -drop, bound, (drop <= bound ? "yes" : "NO"),
               d1, q1, d64, q64
      }'
done
