#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite with ctest; then builds examples/
# against the installed package and runs them (scripts/examples.sh); then the reliability
# checks of docs/reliability.md:
#   default (CI)              the CI subset, scripts/reliability-ci.sh: one clang build folder
#                             (./build-reliab) with ASan+UBSan and fuzzer instrumentation; the
#                             core and runtime unit tests under the sanitizers, the regression
#                             inputs and 15 s each of the three fuzz targets (~8 minutes)
#   MCOMPRESS_RELIABILITY=1   everything (~25 minutes): the core, runtime and pipeline suites
#                             under gcc ASan+UBSan (./build-asan, scripts/asan.sh), all three
#                             fuzz targets for FUZZ_SECONDS (60) each (./build-fuzz), and
#                             clang-tidy on the input-facing readers (scripts/tidy.sh, from a
#                             configured ./build-reliab)
#   MCOMPRESS_RELIABILITY=0   none (a quick local run)
# Both the default and =1 also check that every C++ file matches .clang-format (scripts/format.sh).
# Fails when any test, sanitizer report or fuzz regression fails; the summary lines come last.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
start=$SECONDS
# ctest runs every suite as a few GoogleTest shards (tests/CMakeLists.txt); each writes an XML
# report under build/test-results/, which scripts/test_summary.py counts test by test.
rm -rf build/test-results
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 600) | tee build/ctest.log
python3 scripts/test_summary.py build/test-results >build/test-summary.log || true
echo "test: ctest (Release) took $((SECONDS - start))s: $(cat build/test-summary.log)"

status=0
start=$SECONDS
echo "test: examples/ built against the installed package and run (scripts/examples.sh)"
if scripts/examples.sh 2>&1 | tee build/examples.log; then examples=passed; else
  examples=FAILED status=1
fi
echo "test: examples took $((SECONDS - start))s"
mode=${MCOMPRESS_RELIABILITY:-ci}
if [ "$mode" = 0 ]; then
  echo "test: examples $examples"
  exit $status
fi

echo "test: clang-format (scripts/format.sh --check)"
scripts/format.sh --check || status=1

if [ "$mode" = 1 ]; then
  start=$SECONDS
  echo "test: ASan+UBSan build and unit tests (scripts/asan.sh)"
  # The suites that hold the file, data and recipe readers and the sparse kernels, where memory
  # bugs would live; quant, prune and apps add ~15 minutes of ASan build: `scripts/asan.sh`.
  MCOMPRESS_ASAN_MODULES="${MCOMPRESS_ASAN_MODULES:-core runtime pipeline}" scripts/asan.sh ||
    status=1
  echo "test: ASan+UBSan took $((SECONDS - start))s"

  start=$SECONDS
  echo "test: libFuzzer targets, ${FUZZ_SECONDS:-60}s each (scripts/fuzz.sh)"
  scripts/fuzz.sh || status=1
  echo "test: fuzzing took $((SECONDS - start))s"

  # clang-tidy reads the clang build folder's compile commands; configuring it is enough.
  echo "test: clang-tidy on the input-facing readers (scripts/tidy.sh)"
  (source scripts/cmake_env.sh && cmake -S . -B build-reliab -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DMCOMPRESS_SANITIZE=ON -DMCOMPRESS_FUZZ=ON \
    -DMCOMPRESS_BUILD_APPS=OFF -DMCOMPRESS_BUILD_BENCH=OFF >/dev/null) && scripts/tidy.sh ||
    status=1
else
  start=$SECONDS
  echo "test: reliability checks, CI subset (scripts/reliability-ci.sh)"
  scripts/reliability-ci.sh || status=1
  echo "test: reliability checks took $((SECONDS - start))s"
fi

# The summary lines again, last, so none scrolls away under the sanitizer and fuzz output.
echo "test: Release ctest: $(grep -E 'tests passed|tests failed' build/ctest.log);" \
  "$(cat build/test-summary.log)"
echo "test: examples $examples"
if [ "$mode" = 1 ]; then
  echo "test: ASan+UBSan ctest: $(grep -E 'tests passed|tests failed' build-asan/ctest.log ||
    echo 'no result')"
else
  sed 's/^reliability: /test: /' build-reliab/sanitizer-tests.log 2>/dev/null || true
fi
[ $status -eq 0 ] && echo "test: examples and reliability checks passed" ||
  echo "test: examples or reliability checks FAILED (see above)" >&2
exit $status
