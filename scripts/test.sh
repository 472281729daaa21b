#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite with ctest; then the reliability
# checks of docs/reliability.md when MCOMPRESS_RELIABILITY=1: the unit tests again under
# ASan+UBSan (./build-asan), and each libFuzzer target for a bounded time (./build-fuzz). They
# add ~22 minutes on 2 cores, more than CI's budget allows for now, so they are opt-in.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
start=$SECONDS
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 600) | tee build/ctest.log
echo "test: ctest (Release) took $((SECONDS - start))s"
[ "${MCOMPRESS_RELIABILITY:-0}" = 1 ] || exit 0

start=$SECONDS
echo "test: ASan+UBSan build and unit tests (scripts/asan.sh)"
# The suites that hold the file, data and recipe readers and the sparse kernels, where memory
# bugs would live; quant, prune and apps add ~15 minutes of ASan build: `scripts/asan.sh`.
MCOMPRESS_ASAN_MODULES="${MCOMPRESS_ASAN_MODULES:-core runtime pipeline}" scripts/asan.sh
echo "test: ASan+UBSan took $((SECONDS - start))s"

start=$SECONDS
echo "test: libFuzzer targets, ${FUZZ_SECONDS:-60}s each (scripts/fuzz.sh)"
scripts/fuzz.sh
echo "test: fuzzing took $((SECONDS - start))s"

# The summary lines again, last, so none scrolls away under the sanitizer and fuzz output.
echo "test: Release ctest: $(grep -E 'tests passed|tests failed' build/ctest.log)"
echo "test: ASan+UBSan ctest: $(grep -E 'tests passed|tests failed' build-asan/ctest.log)"
