#!/usr/bin/env bash
# Sets up a Debian 12 or 13 machine to run leakhunt and its tests. Idempotent: run it again any time.
#   - apt: bpftrace, bpfcc-tools (BCC memleak), kernel headers, a C compiler for the targets;
#     with --with-test-tools (scripts/test.sh passes it) also the readers the tests check the reports
#     with: chromium (headless), golang-go (go tool pprof), node/npm (speedscope), prometheus, and the
#     allocators and the server the allocator tests use (jemalloc, tcmalloc, mimalloc, redis)
#   - kernel headers: the exact linux-headers-$(uname -r) when Debian has them, else the nearest
#     cloud/generic headers linked where BCC looks (/lib/modules/$(uname -r)/{build,source})
#   - tracefs and debugfs mounted (uprobe_events and BCC's trace_pipe live there)
#   - .venv with leakhunt (editable) and its test tools
# Needs root for the system part; with LEAKHUNT_SKIP_SYSTEM=1 only the venv is made.
set -euo pipefail
with_test_tools=0
for arg in "$@"; do
  case "$arg" in
    --with-test-tools) with_test_tools=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "scripts/setup.sh: unknown option $arg (known: --with-test-tools)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
root=$(pwd)
say() { printf '[setup] %s\n' "$*"; }
# /usr/bin/python3.X >= 3.11 with venv, readable by every user; empty when there is none
system_python() {
  local cand
  for cand in /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11; do
    if [ -x "$cand" ] && "$cand" -c 'import venv, ensurepip' 2>/dev/null; then echo "$cand"; return; fi
  done
}

if [ "${LEAKHUNT_SKIP_SYSTEM:-0}" != 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup.sh: the system part needs root: run it with sudo (or LEAKHUNT_SKIP_SYSTEM=1 for the venv only)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(bpftrace bpfcc-tools python3-bpfcc gcc g++ libc6-dev make procps)
  if [ "$with_test_tools" = 1 ]; then
    # Readers of the reports and exports, used by the tests: headless chromium, `go tool pprof`
    # (golang-go, ~80 MB download, ~10 s) and speedscope (npm, below; runs in chromium).
    pkgs+=(chromium golang-go)
    # Debian's Prometheus server and promtool: the agent's test scrapes it and fires the example alert.
    pkgs+=(prometheus)
    # The allocators the tests link and preload their targets with (jemalloc, tcmalloc minimal,
    # mimalloc) and a real server that uses jemalloc (redis-server, driven by redis-benchmark).
    pkgs+=(libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev redis-server redis-tools)
    # NodeSource's nodejs carries its own npm, which Debian's npm package conflicts with.
    command -v npm >/dev/null || pkgs+=(nodejs npm)
  fi
  # No `cmd | grep -q` under pipefail: grep exits at the first match and the writer's SIGPIPE
  # fails the whole pipeline (seen here with apt-cache policy).
  installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
  candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' || true; }
  missing=()
  for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
  done
  kver=$(uname -r)
  headers=""
  apt_updated=0
  if ! [ -e "/lib/modules/$kver/build/Makefile" ] && ! [ -e /sys/kernel/kheaders.tar.xz ]; then
    if [ -z "$(candidate linux-headers-cloud-amd64)$(candidate linux-headers-arm64)" ]; then
      apt-get update -qq; apt_updated=1  # no package lists yet (a new machine)
    fi
    if [ -n "$(candidate "linux-headers-$kver")" ]; then
      headers="linux-headers-$kver"
    else
      # A custom kernel (no matching Debian package): take the distribution's cloud (else generic)
      # headers; BCC only needs a consistent set of UAPI/arch headers for memleak's BPF program.
      case "$(uname -m)" in
        x86_64) cands="linux-headers-cloud-amd64 linux-headers-amd64" ;;
        aarch64) cands="linux-headers-cloud-arm64 linux-headers-arm64" ;;
        *) cands="" ;;
      esac
      for cand in $cands; do
        if [ -n "$(candidate "$cand")" ]; then headers="$cand"; break; fi
      done
    fi
    [ -n "$headers" ] && missing+=("$headers")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    [ "${apt_updated:-0}" = 1 ] || apt-get update -qq
    # No service may start while installing (redis-server): the tests start their own on loopback.
    no_start=0
    if ! [ -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; no_start=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$no_start" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    # The package starts a Prometheus service listening on every address; the tests start their own
    # on loopback, so a systemd machine gets it stopped and disabled.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if [[ " ${missing[*]} " == *" redis-server "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
  fi
  if ! [ -e "/lib/modules/$kver/build/Makefile" ] && ! [ -e /sys/kernel/kheaders.tar.xz ]; then
    # Link the newest installed headers where BCC looks for them.
    arch_dir=$(ls -d /usr/src/linux-headers-*-cloud-amd64 /usr/src/linux-headers-*-amd64 \
                      /usr/src/linux-headers-*-cloud-arm64 /usr/src/linux-headers-*-arm64 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$arch_dir" ]; then
      common_dir=$(echo "$arch_dir" | sed -E 's/-(cloud-)?(amd64|arm64)$/-common/')
      mkdir -p "/lib/modules/$kver"
      ln -sfn "$arch_dir" "/lib/modules/$kver/build"
      [ -d "$common_dir" ] && ln -sfn "$common_dir" "/lib/modules/$kver/source"
      say "kernel headers: linked $arch_dir for $kver"
    else
      say "warning: no kernel headers found; the BCC backend will not work (bpftrace will)"
    fi
  fi
  if ! [ -e /sys/kernel/tracing/uprobe_events ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
  fi
  if ! [ -e /sys/kernel/debug/tracing ] && ! mountpoint -q /sys/kernel/debug; then
    mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true
  fi
  # A copy every user can run as /usr/local/bin/leakhunt (`scan`, `report`, `diff` need no root):
  # the checkout and .venv may sit under /root (mode 0700), with pyenv's interpreter there too.
  # Built from the distribution's python3 into /opt/leakhunt (world-readable), again whenever
  # the sources are newer than the last install.
  sys_py=$(system_python)
  if [ -z "$sys_py" ]; then
    apt-get install -y -qq python3 python3-venv >/dev/null; sys_py=$(system_python)
  fi
  prefix=/opt/leakhunt
  if [ -n "$sys_py" ] && { ! [ -x "$prefix/bin/leakhunt" ] || ! [ -f "$prefix/.installed" ] \
       || [ -n "$(find leakhunt templates pyproject.toml -newer "$prefix/.installed" -print -quit)" ]; }; then
    say "installing leakhunt for every user into $prefix (/usr/local/bin/leakhunt)"
    (
      umask 022
      [ -x "$prefix/bin/python" ] || "$sys_py" -m venv "$prefix"
      "$prefix/bin/python" -m pip install -q --upgrade pip >/dev/null
      "$prefix/bin/python" -m pip install -q --force-reinstall --no-deps . >/dev/null
      "$prefix/bin/python" -m pip install -q . >/dev/null
    )
    chmod -R a+rX "$prefix"
    ln -sfn "$prefix/bin/leakhunt" /usr/local/bin/leakhunt
    touch "$prefix/.installed"
  fi
fi

# The distribution's interpreter first: one under /root (pyenv) is unreadable for other users.
py=$(system_python)
for cand in python3.13 python3.12 python3.11 python3; do
  [ -n "$py" ] && break
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py=$(command -v "$cand"); break
  fi
done
if [ -z "$py" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq python3 python3-venv >/dev/null; py=$(command -v python3)
  else
    echo "scripts/setup.sh: need Python >= 3.11 with venv (apt-get install python3-venv)" >&2; exit 2
  fi
fi
if ! [ -x .venv/bin/python ]; then
  say "creating .venv with $py"
  "$py" -m venv .venv
fi
stamp=.venv/.leakhunt-installed
if ! [ -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing leakhunt and test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
# speedscope (the flame graph viewer) reads the folded and pprof exports back in the tests. Pinned;
# kept inside .venv so a fresh clone gets it and git ignores it.
speedscope_version=1.25.0
speedscope_dir=.venv/node
if [ "$with_test_tools" = 1 ] && command -v npm >/dev/null && ! grep -qs "\"version\": \"$speedscope_version\"" \
    "$speedscope_dir/node_modules/speedscope/package.json"; then
  say "npm install speedscope@$speedscope_version into $speedscope_dir"
  mkdir -p "$speedscope_dir"
  npm install --prefix "$speedscope_dir" --no-save --no-audit --no-fund --ignore-scripts \
    "speedscope@$speedscope_version" >/dev/null 2>&1 || say "warning: npm could not install speedscope"
fi
say "ready: $root/.venv/bin/leakhunt ($(.venv/bin/leakhunt --version))"
