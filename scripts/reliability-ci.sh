#!/usr/bin/env bash
# The CI subset of the reliability checks (docs/reliability.md), run by default from
# scripts/test.sh: ONE clang build folder, ./build-reliab, whose libraries are compiled once
# with ASan + UBSan and libFuzzer's coverage instrumentation (MCOMPRESS_SANITIZE=ON together
# with MCOMPRESS_FUZZ=ON), and serve both
#   1. the unit-test suites of MCOMPRESS_RELIAB_SUITES (default: core runtime) under
#      ASan+UBSan, each binary run once as one process (LibTorch's start-up under ASan is ~1 s,
#      so ctest's process per test would cost ~1.5 min for core alone), and
#   2. the fuzz targets of MCOMPRESS_RELIAB_FUZZ (default: all three: fuzz_model_file fuzz_idx
#      fuzz_recipe, the last with every stage library, since the recipe parser validates stage
#      options through the stage registry):
#      fuzz/regressions/ replayed, then FUZZ_SECONDS (default 15) each (scripts/fuzz.sh);
#   and, with MCOMPRESS_TIDY=1, clang-tidy on the input-facing readers from the same compile
#   commands (scripts/tidy.sh, ~2 minutes on 2 cores; MCOMPRESS_RELIABILITY=1 scripts/test.sh
#   runs it too). It is left out of the default to keep the CI run within its 13 minutes.
# Exits non-zero when a test, a sanitizer report or a regression input fails, or the fuzzers
# find something outside libhdf5. The full checks: MCOMPRESS_RELIABILITY=1 scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cmake_env.sh
jobs=${MCOMPRESS_JOBS:-$(nproc)}
suites=${MCOMPRESS_RELIAB_SUITES-core runtime}
fuzzers=${MCOMPRESS_RELIAB_FUZZ-fuzz_model_file fuzz_idx fuzz_recipe}
build=build-reliab

start=$SECONDS
rm -f $build/sanitizer-tests.log  # test.sh prints it last; never a stale one
cmake -S . -B $build -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DMCOMPRESS_SANITIZE=ON -DMCOMPRESS_FUZZ=ON -DMCOMPRESS_BUILD_APPS=OFF \
  -DMCOMPRESS_BUILD_BENCH=OFF >/dev/null
targets=()
for s in $suites; do targets+=("mcompress_${s}_test"); done
for f in $fuzzers; do targets+=("$f"); done
[ ${#targets[@]} -gt 0 ] || { echo "reliability: nothing selected"; exit 0; }
cmake --build $build -j"$jobs" --target "${targets[@]}"
echo "reliability: build ($build: ${targets[*]}) took $((SECONDS - start))s"

status=0
for s in $suites; do
  start=$SECONDS
  exe=$build/tests/mcompress_${s}_test
  log=$build/${s}_test.log
  rc=0
  "$exe" --gtest_brief=1 >"$log" 2>&1 || rc=$?
  if [ $rc -eq 0 ]; then
    result=$(grep -E '^\[  PASSED  \]' "$log" | tail -n 1)
  else
    tail -n 60 "$log"
    result="FAILED (exit $rc), see $log"
    status=1
  fi
  echo "reliability: ASan+UBSan $s tests: $result ($((SECONDS - start))s)" |
    tee -a $build/sanitizer-tests.log
done

# clang-tidy on the input-facing readers, from this folder's compile commands (scripts/tidy.sh).
if [ "${MCOMPRESS_TIDY:-0}" = 1 ]; then
  MCOMPRESS_TIDY_BUILD=$build scripts/tidy.sh 2>&1 | tee -a $build/sanitizer-tests.log ||
    status=1
fi

if [ -n "$fuzzers" ]; then
  start=$SECONDS
  # shellcheck disable=SC2086  # the target list is meant to split
  FUZZ_BUILD_DIR=$build FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh $fuzzers || status=1
  echo "reliability: fuzzing took $((SECONDS - start))s"
fi
exit $status
