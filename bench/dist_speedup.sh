#!/usr/bin/env bash
# Speed-up of data-parallel training on this machine: the same `mcompress train` run (same
# global batch, seed and epochs) as 1 process with 1 thread, 1 process with 2 threads, and
# 2 ranks with 1 thread each on loopback (scripts/launch-local.sh). Prints the training time
# of each (the train_time column: the training loop only, without loading data or saving)
# and the bytes each rank all-reduced per optimizer step, next to 4 bytes x parameters.
# Each time is the fastest of REPEATS (default 3) rounds; the load average is printed too,
# since other work on the machine takes cores from the ranks.
#
# usage: bench/dist_speedup.sh [ARCH] [EPOCHS] [LIMIT] [BATCH]
#   defaults: lenet5, 1 epoch, the first 12000 Fashion-MNIST training images, batch 128
# usage: bench/dist_speedup.sh --bytes
#   every zoo model for one short epoch on 2 ranks: bytes all-reduced per step as measured
#   (the CLI's count of what went into all-reduces, over the steps) against 4 x parameters,
#   and rank 0's wall time per step in collectives
set -euo pipefail
cd "$(dirname "$0")/.."
# From train's line "data parallel: 2 ranks, B bytes all-reduced per step, T ms per step in
# collectives (rank 0)".
reduced_bytes() { sed -n 's/.* \([0-9]*\) bytes all-reduced per step.*/\1/p' "$1"; }
collective_ms() { sed -n 's/.*, \([0-9.]*\) ms per step in collectives.*/\1/p' "$1"; }
if [ "${1:-}" = "--bytes" ]; then
  cli=build/apps/mcompress
  [ -x "$cli" ] || { echo "dist_speedup: build the mcompress target first" >&2; exit 1; }
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  printf "%-13s %10s %16s %18s %16s\n" model parameters "4 x parameters" "measured per step" \
    "collective ms"
  "$cli" zoo | awk 'NR > 2 { print $1, $2 }' | while read -r arch params; do
    scripts/launch-local.sh 2 --threads 1 -- "$cli" train --arch "$arch" --epochs 1 \
      --limit 1280 --batch-size 128 --quiet --force --out "$out/$arch.h5" >"$out/$arch.txt" 2>&1
    printf "%-13s %10s %16s %18s %16s\n" "$arch" "$params" "$(( 4 * params ))" \
      "$(reduced_bytes "$out/$arch.txt")" "$(collective_ms "$out/$arch.txt")"
  done
  exit 0
fi
arch=${1:-lenet5}
epochs=${2:-1}
limit=${3:-12000}
batch=${4:-128}
cli=build/apps/mcompress
[ -x "$cli" ] || { echo "dist_speedup: build the mcompress target first" >&2; exit 1; }
# As bench/run.sh: OpenBLAS's right kernels on AVX-512 machines (the CLI sets its threads).
if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(train --arch "$arch" --epochs "$epochs" --limit "$limit" --batch-size "$batch"
        --seed 1 --quiet --force)

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# train_time of a run's table (the last column, "12.3s").
train_time() { awk '/^'"$arch"' / { t = $NF } END { sub("s", "", t); print t }' "$1"; }

# The fastest of REPEATS rounds (default 3), the three runs interleaved in each round: on a
# shared machine the other load comes and goes.
best() { sort -g | head -n 1; }
for ((round = 0; round < ${REPEATS:-3}; round++)); do
  "$cli" "${common[@]}" --threads 1 --out "$out/one.h5" >"$out/one.txt" 2>/dev/null
  train_time "$out/one.txt" >>"$out/one.times"
  "$cli" "${common[@]}" --threads 2 --out "$out/two_threads.h5" >"$out/two_threads.txt" 2>/dev/null
  train_time "$out/two_threads.txt" >>"$out/two_threads.times"
  scripts/launch-local.sh 2 --threads 1 -- "$cli" "${common[@]}" --out "$out/two_ranks.h5" \
    >"$out/two_ranks.txt" 2>/dev/null
  train_time "$out/two_ranks.txt" >>"$out/two_ranks.times"
done

t1=$(best <"$out/one.times")
t1x2=$(best <"$out/two_threads.times")
t2=$(best <"$out/two_ranks.times")
params=$("$cli" zoo | awk -v a="$arch" '$1 == a { print $2 }')
reduced=$(reduced_bytes "$out/two_ranks.txt")
steps=$(( (limit - limit / 10 + batch - 1) / batch ))

echo "load average before and after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "arch $arch, $epochs epoch(s) of $(( limit - limit / 10 )) images, global batch $batch ($steps steps/epoch), $(nproc) cores"
printf "%-28s %10s %9s\n" "run" "train_s" "speed-up"
printf "%-28s %10s %9s\n" "1 process, 1 thread" "$t1" "1.00"
printf "%-28s %10s %9.2f\n" "1 process, 2 threads" "$t1x2" "$(awk -v a="$t1" -v b="$t1x2" 'BEGIN { print a / b }')"
printf "%-28s %10s %9.2f\n" "2 ranks x 1 thread" "$t2" "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print a / b }')"
echo "bytes all-reduced per step and rank: $reduced measured; 4 x $params parameters = $(( 4 * params ))"
echo "rank 0's time in collectives (transfer and waiting for rank 1): $(collective_ms "$out/two_ranks.txt") ms per step (last round)"
