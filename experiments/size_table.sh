#!/usr/bin/env bash
# The on-disk table of docs/results.md: the mlp pruned to 95% (experiments/prune_table.sh's
# mlp-global95) and quantized to int8-static, against the other ways to store the same network:
# the fp32 mcompress file, the same file in the groups container (format v2), PyTorch's
# `torch.save` of a state_dict with the same tensors (Debian's python3-torch), and raw fp32.
# Everything runs on $THREADS threads (default 1).
# usage: experiments/size_table.sh   Writes runs/size/; prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
mc=build/apps/mcompress
threads=${THREADS:-1}
export OPENBLAS_NUM_THREADS=$threads
out=runs/size
mkdir -p "$out"
[ -f runs/prune/mlp-global95.h5 ] || experiments/prune_table.sh runs/zoo mlp-global95 >/dev/null
"$mc" quantize runs/prune/mlp-global95.h5 --mode int8-static --threads "$threads" --force \
  --out "$out/mlp-g95-int8.h5" >"$out/mlp-g95-int8.log" 2>&1 ||
  { echo "quantize failed, see $out/mlp-g95-int8.log" >&2; exit 1; }
"$mc" convert runs/zoo/mlp.h5 --container groups --force --out "$out/mlp-fp32-v2.h5" >/dev/null
# name shape rows of `mcompress inspect`, e.g. "1.weight   [300, 784]   fp32 ...": a state_dict
# of zero tensors of those shapes (torch.save does not compress, so values do not matter).
"$mc" inspect runs/zoo/mlp.h5 | awk '/^[0-9A-Za-z_.]+ +\[/' | /usr/bin/python3 -c '
import re, sys, torch
state = {}
for line in sys.stdin:
    name, shape = re.match(r"(\S+)\s+\[([0-9, ]*)\]", line).groups()
    state[name] = torch.zeros([int(d) for d in shape.split(",") if d.strip()])
torch.save(state, sys.argv[1])' "$out/mlp-fp32-state_dict.pt"
small=$(stat -c %s "$out/mlp-g95-int8.h5")
params=$("$mc" inspect runs/zoo/mlp.h5 | awk '$1 == "total" {print $2}')
accuracy=$("$mc" eval "$out/mlp-g95-int8.h5" --json --latency-batch --threads "$threads" | jq .accuracy)
dense=$("$mc" eval runs/zoo/mlp.h5 --json --latency-batch --threads "$threads" | jq .accuracy)
awk -v a="$accuracy" -v d="$dense" -v b="$small" 'BEGIN {
  printf "The 95%%-pruned mlp quantized to int8-static: %d bytes, %.2f%% test accuracy (fp32 dense %.2f%%).\n\n", b, a * 100, d * 100 }'
echo "| compared with | bytes | ratio |"
echo "| --- | ---: | ---: |"
row() { awk -v w="$1" -v n="$2" -v b="$small" 'BEGIN { printf "| %s | %d | %.1fx |\n", w, n, n / b }'; }
row "the fp32 dense mcompress file (\`runs/zoo/mlp.h5\`, packed container)" "$(stat -c %s runs/zoo/mlp.h5)"
row "the same fp32 file in the groups container (\`convert --container groups\`)" "$(stat -c %s "$out/mlp-fp32-v2.h5")"
row "the same tensors' fp32 \`state_dict\` saved by PyTorch (\`torch.save\`)" "$(stat -c %s "$out/mlp-fp32-state_dict.pt")"
row "the raw fp32 tensors (4 bytes per value)" "$((params * 4))"
