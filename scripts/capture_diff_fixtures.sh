#!/usr/bin/env bash
# Regenerates tests/fixtures/diff/: real BCC memleak captures of tests/targets/fixleak.c in three
# builds (VERSION=1 leaky, 2 = half fixed + a new leak, 3 = fixed), then an investigation JSON of
# each (scripts/build_diff_fixtures.py: leakhunt's memleak parser and stack analysis).
# Needs root, BCC (memleak-bpfcc) and gcc. Takes about a minute.
#   bash scripts/capture_diff_fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/diff
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
memleak=$(command -v memleak-bpfcc || command -v memleak || echo /usr/share/bcc/tools/memleak)
mkdir -p "$out"
pids=()
capture() {  # capture VERSION: build, run, watch; sets $pid
  local v=$1
  "$work/v$v/fixleak" 17 &
  pid=$!
  sleep 0.5
  # 6 reports 2 s apart; BCC needs ~3 s to compile first, the target runs 17 s in all.
  if PYTHONUNBUFFERED=1 timeout 40 "$memleak" -p "$pid" 2 6 >"$out/memleak-v$v.txt" 2>"$work/err"; then
    wait "$pid"; return 0
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  return 1
}
for v in 1 2 3; do
  # Same basename in every build, as when one program is rebuilt: module names match, offsets differ.
  mkdir -p "$work/v$v"
  gcc -O1 -g -fno-omit-frame-pointer -DVERSION=$v -o "$work/v$v/fixleak" tests/targets/fixleak.c
  # Attaching can fail while other uprobes are being registered at the same moment: try again.
  ok=0
  for _try in 1 2 3; do
    if capture "$v"; then ok=1; break; fi
    tail -n 3 "$work/err" >&2; sleep 2
  done
  [ "$ok" = 1 ] || { echo "memleak failed 3 times on build v$v" >&2; exit 1; }
  pids+=("$pid")
  echo "v$v: $(grep -c 'Top' "$out/memleak-v$v.txt") reports from pid $pid"
done
version=$(dpkg-query -W -f='${Version}' bpfcc-tools 2>/dev/null | sed 's/+.*//' || echo unknown)
.venv/bin/python scripts/build_diff_fixtures.py "$out" "${pids[@]}" "$memleak" "$version" 2 "$(date -u +%F)"
