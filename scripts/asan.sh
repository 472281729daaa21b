#!/usr/bin/env bash
# Builds mcompress with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -O1 -g1) into
# ./build-asan and runs the unit tests there. Runtime options and suppressions are compiled
# into the test binaries from tests/sanitizers/. Extra arguments go to ctest, e.g.
# `scripts/asan.sh -R Recipe`. docs/reliability.md explains the choices.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${MCOMPRESS_JOBS:-$(nproc)}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DMCOMPRESS_SANITIZE=ON -DMCOMPRESS_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
cd build-asan
ctest --output-on-failure -j"$jobs" --timeout 900 ${MCOMPRESS_ASAN_CTEST_ARGS:-} "$@" |
  tee ctest.log
