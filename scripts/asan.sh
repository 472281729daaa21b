#!/usr/bin/env bash
# Builds mcompress with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -O1 -g1) into
# ./build-asan and runs the unit tests there. Runtime options and suppressions are compiled
# into the test binaries from tests/sanitizers/. docs/reliability.md explains the choices.
#   scripts/asan.sh                                   # every test suite
#   MCOMPRESS_ASAN_MODULES="core pipeline" scripts/asan.sh   # those suites only (CI)
#   scripts/asan.sh -R RecipeTest                     # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cmake_env.sh
jobs=${MCOMPRESS_JOBS:-$(nproc)}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DMCOMPRESS_SANITIZE=ON -DMCOMPRESS_BUILD_BENCH=OFF >/dev/null
modules=${MCOMPRESS_ASAN_MODULES:-}
if [ -n "$modules" ]; then
  targets=()
  for m in $modules; do targets+=("mcompress_${m}_test"); done
  cmake --build build-asan -j"$jobs" --target "${targets[@]}"
  set -- -L "^($(echo $modules | tr ' ' '|'))\$" "$@"
else
  cmake --build build-asan -j"$jobs"
fi
cd build-asan
ctest --output-on-failure -j"$jobs" --timeout 900 "$@" | tee ctest.log
