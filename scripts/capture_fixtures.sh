#!/usr/bin/env bash
# Regenerates the CAPTURED parser fixtures in tests/fixtures/ from real runs on this machine
# (root, bpftrace, BCC memleak). Hand-made fixtures (formats of tool versions not installed here)
# are not touched; tests/fixtures/README.md says which is which and the command behind each file.
# Usage: sudo bash scripts/capture_fixtures.sh [NAME...]   (no name = all captures)
set -uo pipefail
set -m  # background jobs must not ignore SIGINT (memleak and bpftrace stop on it)
cd "$(dirname "$0")/.."
fx=tests/fixtures
bin=tests/targets/bin
mkdir -p "$fx" "$bin"
gcc -O1 -g -fno-omit-frame-pointer -o "$bin/trace_leaker" tests/targets/trace_leaker.c -lpthread
g++ -O1 -g -fno-omit-frame-pointer -o "$bin/cpp_leaker" tests/targets/cpp_leaker.cc
memleak=$(command -v memleak-bpfcc || echo /usr/share/bcc/tools/memleak)
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
libc=${libc:-/lib/x86_64-linux-gnu/libc.so.6}
# File names carry the tools' major.minor versions (bcc-0.26-*, bpftrace-0.17-* on Debian 12;
# bcc-0.31-*, bpftrace-0.23-* on Debian 13 through scripts/debian13.sh --capture).
bccv=$("$(sed -n '1s/^#! *//p' "$memleak" | cut -d' ' -f1)" -c 'import bcc; print(bcc.__version__)' 2>/dev/null | grep -oE '^[0-9]+\.[0-9]+' || true)
btv=$(bpftrace --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -n 1 || true)
[ -n "$bccv" ] && [ -n "$btv" ] || { echo "capture_fixtures.sh: cannot tell the BCC ($bccv) or bpftrace ($btv) version" >&2; exit 1; }
echo "capturing with BCC $bccv and bpftrace $btv"
export PYTHONUNBUFFERED=1   # memleak's output is block-buffered into a file otherwise
# Run a command with SIGINT restored to its default: a shell started in the background hands its
# children SIGINT ignored, and Python (memleak) then never raises KeyboardInterrupt on SIGINT.
with_sigint=(python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])')
names=("$@")
selected() { [ ${#names[@]} -eq 0 ] && return 0; local n; for n in "${names[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# start_target OUT ARGV...: runs a target in the background, waits for its "ready PID" line
start_target() {
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  tpid=$!
  for _ in $(seq 100); do grep -q '^ready' "$out" 2>/dev/null && return 0; sleep 0.05; done
  echo "target $* did not start" >&2; return 1
}
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# wait_for FILE PATTERN SECONDS
wait_for() { for _ in $(seq $(( $3 * 20 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# 1. BCC periodic blocks of a C++ target (demangled names), with and without -a.
if selected bcc_periodic; then
  start_target /tmp/lh_cpp.out "$bin/cpp_leaker" 12
  timeout -k 5 -s INT 20 "${with_sigint[@]}" "$memleak" -p "$tpid" -T 5 1 4 >"$fx/bcc-$bccv-periodic-cpp.txt" 2>/dev/null
  stop_pid "$tpid"
fi
if selected bcc_periodic_a; then
  start_target /tmp/lh_tl.out "$bin/trace_leaker" 400 2500
  timeout -k 5 -s INT 20 "${with_sigint[@]}" "$memleak" -p "$tpid" -a -T 4 1 4 >"$fx/bcc-$bccv-periodic-a.txt" 2>/dev/null
  stop_pid "$tpid"
fi
# 2. --combined-only: crashes each interval in 0.26 (stderr kept, it is what users paste); works in 0.31.
combined_name=combined-only; [ "$bccv" = 0.26 ] && combined_name=combined-only-crash
if selected bcc_combined; then
  start_target /tmp/lh_cpp.out "$bin/cpp_leaker" 8
  timeout -k 5 -s INT 6 "${with_sigint[@]}" "$memleak" -p "$tpid" --combined-only -T 3 1 2 >"$fx/bcc-$bccv-$combined_name.txt" 2>&1
  stop_pid "$tpid"
fi
# 3. Kernel allocators (no -p): kernel frames.
if selected bcc_kernel; then
  timeout -k 5 -s INT 15 "${with_sigint[@]}" "$memleak" -T 3 1 1 >"$fx/bcc-$bccv-kernel.txt" 2>/dev/null
fi
# 4. -t per-call trace of trace_leaker, plus what the target says it leaked (the expectation).
if selected bcc_trace; then
  start_target "$fx/bcc-$bccv-trace.expected" "$bin/trace_leaker" 60
  "${with_sigint[@]}" "$memleak" -p "$tpid" -t >"$fx/bcc-$bccv-trace.txt" 2>&1 &  # stderr too: the KeyboardInterrupt traceback users paste
  mpid=$!
  wait_for "$fx/bcc-$bccv-trace.txt" '^Attaching' 30; sleep 1
  kill -USR1 "$tpid"
  wait_for "$fx/bcc-$bccv-trace.expected" '^done' 30; sleep 1
  kill -INT "$mpid"; wait "$mpid" 2>/dev/null
  stop_pid "$tpid"
fi
# 4b. Two memleak -t at once (two targets): the kernel's trace_pipe takes one reader only, so the
#     second memleak crashes with EBUSY (-b.txt) while the first traces normally (-a.txt).
if selected bcc_trace_two; then
  start_target "$fx/bcc-$bccv-trace-two-a.expected" "$bin/trace_leaker" 40
  apid=$tpid
  start_target "$fx/bcc-$bccv-trace-two-b.expected" "$bin/trace_leaker" 40
  bpid_t=$tpid
  "${with_sigint[@]}" "$memleak" -p "$apid" -t >"$fx/bcc-$bccv-trace-two-a.txt" 2>&1 &
  ma=$!
  "${with_sigint[@]}" "$memleak" -p "$bpid_t" -t >"$fx/bcc-$bccv-trace-two-b.txt" 2>&1 &
  mb=$!
  wait_for "$fx/bcc-$bccv-trace-two-a.txt" '^Attaching' 60; wait_for "$fx/bcc-$bccv-trace-two-b.txt" '^Attaching' 60; sleep 2
  kill -USR1 "$apid" "$bpid_t"
  wait_for "$fx/bcc-$bccv-trace-two-a.expected" '^done' 30; wait_for "$fx/bcc-$bccv-trace-two-b.expected" '^done' 30; sleep 1
  kill -INT "$ma" "$mb"; wait "$ma" "$mb" 2>/dev/null
  stop_pid "$apid"; stop_pid "$bpid_t"
fi
# 5. bpftrace: leakhunt's probe protocol (time, then @bytes and @count by ustack), JSON and text,
#    perf-style and default stack keys.
bt_protocol() { # $1 = PID, $2 = ustack argument ("perf" or "")
  local st="ustack($2)"; [ -z "$2" ] && st="ustack"
  cat <<BT
BEGIN { printf("leakhunt: attached\n"); }
uprobe:$libc:malloc /pid == $1/ { @size[tid] = arg0; }
uretprobe:$libc:malloc /pid == $1 && @size[tid]/ {
  @bytes[$st] = sum(@size[tid]); @count[$st] = sum(1);
  @stk[retval] = $st; @sz[retval] = @size[tid]; delete(@size[tid]);
}
uprobe:$libc:free /pid == $1 && @sz[arg0]/ {
  @bytes[@stk[arg0]] = sum(-@sz[arg0]); @count[@stk[arg0]] = sum(-1);
  delete(@stk[arg0]); delete(@sz[arg0]);
}
interval:s:1 { time("%H:%M:%S\n"); print(@bytes); print(@count); }
END { clear(@stk); clear(@sz); clear(@size); clear(@bytes); clear(@count); }
BT
}
bt_run() { # $1 = out file, $2 = format (json|text), $3 = ustack arg, $4 = seconds
  start_target /tmp/lh_cpp.out "$bin/cpp_leaker" $(( $4 + 4 ))
  bt_protocol "$tpid" "$3" >/tmp/lh_protocol.bt
  local fmt=(); [ "$2" = json ] && fmt=(-f json)
  timeout -k 5 -s INT "$4" "${with_sigint[@]}" bpftrace "${fmt[@]}" -p "$tpid" /tmp/lh_protocol.bt >"$1" 2>/tmp/lh_bt_stderr.log
  stop_pid "$tpid"
}
# From 0.2x bpftrace prints every failed map update on stdout ("Map full" helper errors: thousands
# of lines once cpp_leaker's ~1000 live blocks a second fill the default 4096-key maps after ~4 s),
# so newer versions get the bigger maps leakhunt itself asks for (probe.tools.bpftrace_map_env).
bt_secs=8
[ "$btv" = 0.17 ] || export BPFTRACE_MAX_MAP_KEYS=65536
selected bt_json && bt_run "$fx/bpftrace-$btv-protocol.json" json perf "$bt_secs"
selected bt_text && bt_run "$fx/bpftrace-$btv-protocol.txt" text perf "$bt_secs"
selected bt_json_default && bt_run "$fx/bpftrace-$btv-protocol-default-stack.json" json "" "$bt_secs"
selected bt_text_default && bt_run "$fx/bpftrace-$btv-protocol-default-stack.txt" text "" "$bt_secs"
# 5b. The same with maps of 512 keys: cpp_leaker's live blocks fill them within a second, and from
#     0.2x bpftrace reports each failed map update on stdout ("Map full" helper errors; kept gzipped).
if [ "$btv" != 0.17 ]; then
  for fmt in json txt; do
    if selected "bt_mapfull_$fmt"; then
      BPFTRACE_MAX_MAP_KEYS=512 bt_run "$fx/bpftrace-$btv-protocol-mapfull.$fmt" "${fmt/txt/text}" perf 4
      gzip -9 -f "$fx/bpftrace-$btv-protocol-mapfull.$fmt"  # ~2 MB of repeated warnings: ~10 KB
    fi
  done
fi
# 6. leakhunt's own trace script (one event per line): see templates/probe/trace.bt.j2
if selected bt_trace && [ -x .venv/bin/python ]; then
  start_target "$fx/bpftrace-$btv-trace.expected" "$bin/trace_leaker" 60
  .venv/bin/python -c "from leakhunt.probe.bpftrace import render_trace_script as r; import sys; print(r(int(sys.argv[1]), sys.argv[2]))" "$tpid" "$libc" >/tmp/lh_trace.bt
  "${with_sigint[@]}" bpftrace -p "$tpid" /tmp/lh_trace.bt >"$fx/bpftrace-$btv-trace.txt" 2>/dev/null &
  bpid=$!
  wait_for "$fx/bpftrace-$btv-trace.txt" 'leakhunt: tracing pid' 60 || { echo 'bpftrace did not attach' >&2; kill -INT $bpid; stop_pid "$tpid"; exit 1; }
  kill -USR1 "$tpid"
  wait_for "$fx/bpftrace-$btv-trace.expected" '^done' 30; sleep 1
  kill -INT "$bpid"; wait "$bpid" 2>/dev/null
  stop_pid "$tpid"
fi
ls -l "$fx"/bcc-"$bccv"-* "$fx"/bpftrace-"$btv"-* 2>/dev/null || true
