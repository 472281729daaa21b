#!/usr/bin/env bash
# Starts N ranks of one mcompress command on this machine (a data-parallel run on loopback):
#
#   scripts/launch-local.sh N [--port P] [--threads T] -- mcompress train --arch lenet5 --out m.h5
#
# Each rank gets the torchrun environment (WORLD_SIZE, RANK, MASTER_ADDR=127.0.0.1,
# MASTER_PORT) and --threads T (default: cores / N, at least 1; a --threads in the command
# wins). Rank 0's output passes
# through; the other ranks' goes to <tmp>/rank<R>.log and is shown only when a rank fails.
# The exit status is the first non-zero status among the ranks (0 when all succeed); when
# one rank fails the others fail too, within the run's --dist-timeout (docs/scaling.md).
set -euo pipefail

usage() {
  echo "usage: $0 N [--port P] [--threads T] -- mcompress COMMAND [options]" >&2
  exit 2
}

[ $# -ge 3 ] || usage
world=$1
shift
[[ "$world" =~ ^[1-9][0-9]*$ ]] || usage
port=""
threads=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ "${1:-}" = "--" ] || usage
shift
[ $# -ge 1 ] || usage

if [ -z "$port" ]; then
  # A free port: what the kernel hands a socket bound to port 0.
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
if [ -z "$threads" ]; then
  threads=$(( $(nproc) / world ))
  [ "$threads" -ge 1 ] || threads=1
fi

# The command's own --threads wins over the launcher's.
extra=(--threads "$threads")
for a in "$@"; do
  case "$a" in --threads | --threads=*) extra=() ;; esac
done

logs=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup INT TERM

for ((rank = 0; rank < world; rank++)); do
  if [ "$rank" -eq 0 ]; then
    WORLD_SIZE=$world RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$@" "${extra[@]}" &
  else
    WORLD_SIZE=$world RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$@" "${extra[@]}" >"$logs/rank$rank.log" 2>&1 &
  fi
  pids+=($!)
done

status=0
for ((rank = 0; rank < world; rank++)); do
  rc=0
  wait "${pids[$rank]}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    if [ "$rank" -gt 0 ]; then
      echo "launch-local: rank $rank exited with $rc:" >&2
      cat "$logs/rank$rank.log" >&2
    fi
    [ "$status" -ne 0 ] || status=$rc
  fi
done
rm -rf "$logs"
exit "$status"
