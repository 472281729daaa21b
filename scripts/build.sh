#!/usr/bin/env bash
# Configures and builds mcompress (Release, all cores) into ./build. Extra arguments go to
# `cmake --build`, e.g. `scripts/build.sh --target mcompress`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cmake_env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" "$@"
