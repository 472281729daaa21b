#!/usr/bin/env bash
# clang-format (the checked-in .clang-format) over the project's own C++ sources, the files git
# tracks under the module folders. `--check` (what scripts/test.sh runs) lists every file that
# is not formatted and fails; `--fix` formats them in place.
#   scripts/format.sh --check
#   scripts/format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---check}
mapfile -t files < <(git ls-files '*.cpp' '*.h')
case "$mode" in
  --fix) clang-format -i "${files[@]}" ;;
  --check)
    bad=()
    for f in "${files[@]}"; do
      clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
    done
    if [ ${#bad[@]} -gt 0 ]; then
      printf 'format: not clang-formatted: %s\n' "${bad[@]}" >&2
      echo "format: ${#bad[@]} of ${#files[@]} files; run scripts/format.sh --fix" >&2
      exit 1
    fi
    echo "format: all ${#files[@]} C++ files match .clang-format" ;;
  *) echo "usage: scripts/format.sh --check|--fix" >&2; exit 2 ;;
esac
