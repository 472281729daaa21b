#!/usr/bin/env bash
# clang-tidy (.clang-tidy) over mcompress's own sources; any warning fails.
#   scripts/tidy.sh          the input-facing readers, where untrusted bytes arrive (the CI set,
#                            run by scripts/reliability-ci.sh): the model file, IDX/HDF5 data,
#                            spec JSON, recipe YAML and stage options, and the atomic writer
#   scripts/tidy.sh --all    every library and CLI source (~4.5 minutes on 2 cores)
#   scripts/tidy.sh REGEX    the sources whose path matches REGEX
# Uses the clang build folder's compile commands (MCOMPRESS_TIDY_BUILD, default build-reliab,
# configured by reliability-ci.sh) without its precompiled <torch/torch.h>: clang-tidy then
# parses only the headers a file includes, 2-20 s a file instead of about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MCOMPRESS_TIDY_BUILD:-build-reliab}
readers='core/src/(arch_spec|atomic_file|dataset|model_file|hdf5_handle|tensor_codec|model_checks|model_writer|tensor_entry|tensor_reader|stage)\.cpp|pipeline/src/recipe\.cpp'
case "${1:-}" in
  "") files=$readers ;;
  --all) files='/(core|runtime|quant|prune|distill|pipeline|interop)/src/|/apps/' ;;
  *) files=$1 ;;
esac
[ -f "$build/compile_commands.json" ] || {
  echo "tidy: $build/compile_commands.json is missing; run scripts/reliability-ci.sh first" >&2
  exit 2
}
db=$build/tidy
mkdir -p "$db"
# Without the precompiled header and the sanitizers; a unity source (the libraries compile in
# batches, cmake/mcompress_helpers.cmake) becomes one entry per file it includes, so that each
# file is checked on its own.
python3 - "$build/compile_commands.json" "$db/compile_commands.json" <<'PY'
import json, re, sys
entries = []
for e in json.load(open(sys.argv[1])):
    cmd = re.sub(r" -Xclang -include(-pch)? -Xclang \S+| -fsanitize\S*", "", e["command"])
    files = [e["file"]]
    if re.search(r"/Unity/unity_\d+_cxx\.cxx$", e["file"]):
        files = re.findall(r'^#include "([^"]+)"', open(e["file"]).read(), re.M)
    for f in files:
        entries.append(dict(e, file=f, command=cmd.replace(e["file"], f)))
json.dump(entries, open(sys.argv[2], "w"), indent=1)
PY
start=$SECONDS
log=$db/tidy.log
rc=0
run-clang-tidy-14 -p "$db" -j"$(nproc)" -quiet "$files" >"$log" 2>&1 || rc=$?
# run-clang-tidy-14 fails only on compiler errors; a warning fails here.
findings=$(grep -E '(warning|error): ' "$log" | sed 's/\x1b\[[0-9;]*m//g' | sort -u || true)
count=$(grep -c '^clang-tidy-14 ' "$log" || true)
if [ $rc -eq 0 ] && [ -z "$findings" ] && [ "$count" -gt 0 ]; then
  echo "tidy: $count files clean ($((SECONDS - start))s)"
  exit 0
fi
[ -z "$findings" ] || echo "$findings"
echo "tidy: FAILED ($count files, exit $rc), see above and $log" >&2
exit 1
