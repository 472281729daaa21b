#!/usr/bin/env bash
# The weight-sharing table of docs/results.md: the pruned models of experiments/prune_table.sh
# quantized by `mcompress quantize --mode codebook` (k-means shared values, fine-tuned) at each
# number of bits of its row, evaluated on the 10000 Fashion-MNIST test images by `mcompress eval` (the deployable
# runtime). Sizes are whole files, compared with the fp32 dense file of the same model
# (experiments/train_zoo.sh). Everything runs on $THREADS threads (default 1).
# usage: experiments/codebook_table.sh [ZOO_DIR] [NAMES...]   (default runs/zoo, every row)
# Reads runs/prune/<pruned>.h5; writes runs/codebook/<name>-b<bits>.{h5,log}; prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
zoo=${1:-runs/zoo}
shift || true
only=("$@")
out=runs/codebook
mc=build/apps/mcompress
threads=${THREADS:-1}
export OPENBLAS_NUM_THREADS=$threads
mkdir -p "$out"

# name | zoo model | pruned file (experiments/prune_table.sh) | allowed drop | target ratio | bits
rows=(
  "mlp|mlp|runs/prune/mlp-global95.h5|1.0|50|3 4 5"
  "mlp97|mlp|runs/prune/mlp-global97.h5|1.0|50|2 3 4"
  "lenet5|lenet5|runs/prune/lenet5-global90.h5|1.0|40|3 4 5"
  "lenet5-95|lenet5|runs/prune/lenet5-global95.h5|1.0|40|3 4"
)

echo "| model | start | bits | fp32 dense (%) | codebook (%) | Δ (points) | file (bytes) | fp32 file ÷ file | tensors ÷ fp32 tensors | accuracy holds | target ratio |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
for row in "${rows[@]}"; do
  IFS='|' read -r name model pruned bound target bits_list <<<"$row"
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then continue; fi
  [ -f "$pruned" ] || { echo "missing $pruned: run experiments/prune_table.sh first" >&2; exit 1; }
  dense=$("$mc" eval "$zoo/$model.h5" --json --threads "$threads" | jq .accuracy)
  dense_bytes=$(stat -c %s "$zoo/$model.h5")
  for bits in $bits_list; do
    file="$out/$name-b$bits.h5"
    "$mc" quantize "$pruned" --mode codebook --bits "$bits" --threads "$threads" --force \
      --out "$file" >"$out/$name-b$bits.log" 2>&1 ||
      { echo "quantize failed, see $out/$name-b$bits.log" >&2; exit 1; }
    acc=$("$mc" eval "$file" --json --threads "$threads" | jq .accuracy)
    bytes=$(stat -c %s "$file")
    # inspect's last line: "... stored tensors: X (R x smaller); file: ..."
    tensors=$("$mc" inspect "$file" | sed -n 's/.*stored tensors: .* (\([0-9.]*\)x smaller).*/\1/p')
    awk -v m="$model" -v p="$(basename "$pruned" .h5)" -v b="$bits" -v d="$dense" -v q="$acc" \
        -v db="$dense_bytes" -v fb="$bytes" -v t="$tensors" -v bound="$bound" -v target="$target" 'BEGIN {
      drop = (d - q) * 100
      printf "| %s | %s | %d | %.2f | %.2f | %+.2f | %d | %.1fx | %sx | %s | %dx |\n",
             m, p, b, d * 100, q * 100, -drop, fb, db / fb, t, (drop <= bound ? "yes" : "NO"), target
    }'
  done
done
