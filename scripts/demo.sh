#!/usr/bin/env bash
# Installs what is missing, builds the CLI, trains the default model on Fashion-MNIST (cached
# in runs/ after the first run), evaluates it with the deployable runtime and inspects the file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target mcompress
mc=build/apps/mcompress
arch=${ARCH:-lenet5}
mkdir -p runs
if [ ! -f "runs/$arch.h5" ]; then
  "$mc" train --arch "$arch" --seed 0 --out "runs/$arch.h5"
fi
"$mc" eval "runs/$arch.h5" --plan
"$mc" inspect "runs/$arch.h5"
