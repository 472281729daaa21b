#!/usr/bin/env bash
# Installs mcompress from ./build into ./build/install, builds examples/ against the installed
# package (find_package(mcompress), as another project would) and runs each example on a slice
# of Fashion-MNIST. Run after scripts/build.sh; scripts/test.sh runs it. ~2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cmake_env.sh
root=$PWD
prefix=$root/build/install
work=$root/build/examples-run
data=${MCOMPRESS_DATA:-/usr/share/datasets/fashion-mnist}

rm -rf "$prefix" "$work"
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples -B build/examples -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  >/dev/null
cmake --build build/examples -j"$(nproc)"

mkdir -p "$work" && cd "$work"
export OMP_NUM_THREADS=1  # the examples leave LibTorch's thread count at its default
ex=$root/build/examples
echo "examples: a model to start from (mlp, 1 epoch on 6000 images)"
"$prefix/bin/mcompress" train --arch mlp --epochs 1 --limit 6000 --quiet --threads 1 \
  --data "$data" --out mlp.h5
echo "examples: quantize_model"
"$ex/quantize_model/quantize_model" mlp.h5 "$data" mlp-int8.h5 2000
echo "examples: prune_model"
"$ex/prune_model/prune_model" mlp.h5 "$data" mlp-pruned.h5 0.8 3000
echo "examples: distill_model"
"$ex/distill_model/distill_model" mlp.h5 mlp-small "$data" mlp-small.h5 1 3000
echo "examples: run_recipe"
"$ex/run_recipe/run_recipe" "$root/examples/run_recipe/quick.yaml" --set output=quick.h5
for f in mlp-int8.h5 mlp-pruned.h5 mlp-small.h5 quick.h5; do
  "$prefix/bin/mcompress" inspect "$f" | tail -1
done
echo "examples: all four built against the installed package and ran"
