#!/usr/bin/env bash
# The Debian 13 (trixie) test lane: leakhunt's probe tests against trixie's own bpftrace (0.23) and
# BCC (0.31), on this machine's kernel. `.ci/run` runs it after the main suite; run it by hand as root.
#   1. builds a trixie root with debootstrap under $LEAKHUNT_TRIXIE_ROOT (default
#      /var/cache/leakhunt-trixie), or reuses the one already there (the stamp names what it holds)
#   2. copies this checkout into it (/src/leakhunt; its .venv stays between runs)
#   3. in a private mount namespace, binds /proc, /sys (with tracefs and debugfs), /dev and the shared
#      probe lock into the root, and runs scripts/setup.sh there (the Debian 13 set-up: packages,
#      headers linked for BCC, .venv), then pytest on the probe and parser tests (every backend)
# Arguments go to pytest instead of the default test selection, e.g. scripts/debian13.sh -k trace -x
# `scripts/debian13.sh --capture [NAME...]` runs scripts/capture_fixtures.sh there instead and copies
# the captures (bcc-0.31-*, bpftrace-0.23-*) back into tests/fixtures/.
# Environment: LEAKHUNT_TRIXIE_ROOT (cache folder), LEAKHUNT_DEBIAN_MIRROR (default deb.debian.org),
#   LEAKHUNT_TRIXIE_REBUILD=1 (build the root again).
set -euo pipefail
# The whole script is read before it runs (a braced block), so editing this file while a lane runs
# cannot change what that lane does.
{
cd "$(dirname "$0")/.."
repo=$(pwd)
capture=0
case "${1:-}" in
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  --capture) capture=1; shift ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "scripts/debian13.sh: needs root (debootstrap, chroot, mounts, probes)" >&2; exit 2
fi
root=${LEAKHUNT_TRIXIE_ROOT:-/var/cache/leakhunt-trixie}
mirror=${LEAKHUNT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
lane_start=$(date +%s)
# One lane at a time per root (two checkouts running CI on one machine take turns).
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
say() { printf '[debian13] %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - lane_start )); }

# What the root is built with; a different stamp (this list changed) rebuilds it. scripts/setup.sh
# installs the probe tools itself (that is part of what this lane tests); the Python libraries for
# the own probe's instruction placement come from Debian too.
base_pkgs=(python3 python3-venv ca-certificates python3-capstone python3-pyelftools)
stamp="trixie minbase ${base_pkgs[*]}"
if [ "${LEAKHUNT_TRIXIE_REBUILD:-0}" = 1 ] || [ "$(cat "$root/.leakhunt-root" 2>/dev/null || true)" != "$stamp" ]; then
  command -v debootstrap >/dev/null || {
    say "apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  t0=$(date +%s)
  tmp="$root.new"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$root")"
  say "debootstrap trixie into $tmp (from $mirror)"
  debootstrap --variant=minbase --include="$(IFS=,; echo "${base_pkgs[*]}")" trixie "$tmp" "$mirror" \
    > "$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; say "debootstrap failed (log: $tmp.log)"; exit 1; }
  echo "deb $mirror trixie main" > "$tmp/etc/apt/sources.list"
  echo "$stamp" > "$tmp/.leakhunt-root"
  rm -rf "$root"; mv "$tmp" "$root"; rm -f "$tmp.log"
  say "root built in $(( $(date +%s) - t0 )) s"
else
  say "reusing the trixie root in $root"
fi

# This checkout (as it is, uncommitted changes included) into /src/leakhunt; its .venv is kept.
# (/opt/leakhunt is where scripts/setup.sh installs leakhunt for every user; lanes before it copied
# the checkout there, and the two overwrote each other: such a copy is removed.)
[ -f "$root/opt/leakhunt/pyproject.toml" ] && rm -rf "$root/opt/leakhunt"
dest="$root/src/leakhunt"
mkdir -p "$dest"
find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
tar -C "$repo" --exclude=./.venv --exclude=./.git --exclude=./tests/targets/bin --exclude=./reports \
  --exclude='__pycache__' --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.hypothesis -cf - . \
  | tar -C "$dest" -xf -
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip inside trusts what pip here trusts (a proxy's CA, if this machine's bundle has one).
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
pip_cert=""
if [ -f "$host_ca" ]; then cp "$host_ca" "$root/etc/leakhunt-host-ca.crt"; pip_cert=/etc/leakhunt-host-ca.crt; fi

if [ "$capture" = 1 ]; then
  inner="flock -o /tmp/leakhunt-probe.lock bash scripts/capture_fixtures.sh $(printf '%q ' "$@")"
  touch "$dest/.capture-start"
else
  if [ $# -eq 0 ]; then
    # The probing commands for real with every backend, the import of what they printed, and the
    # parsers on the fixtures (captured on Debian 12 and on this lane).
    set -- tests/integration/test_investigate.py tests/integration/test_run.py \
      tests/integration/test_trace.py tests/integration/test_reallocarray.py \
      tests/integration/test_import.py tests/integration/test_doctor.py \
      tests/unit/test_parse_bpftrace.py tests/unit/test_parse_memleak.py tests/unit/test_parse_trace.py \
      tests/unit/test_trace_script.py tests/unit/test_scriptgen.py tests/unit/test_parse_debian13.py
    # the native backend's own tests, once they exist (the shared ones above run it too)
    [ -e tests/integration/test_native.py ] && set -- "$@" tests/integration/test_native.py
  fi
  inner=".venv/bin/python -m pytest -p no:cacheprovider -ra --durations=60 --durations-min=2 $(printf '%q ' "$@")"
fi
lock=/tmp/leakhunt-probe.lock
touch "$lock"
mkdir -p "$root/tmp"; touch "$root$lock"
# A private mount namespace: every bind below disappears with it, whatever happens to this script.
set +e
unshare --mount --propagation private bash -euo pipefail -c '
  root=$1; lock=$2; pip_cert=$3; shift 3
  mount --rbind /proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount --bind "$lock" "$root$lock"
  chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 CI="${CI:-true}" ${pip_cert:+PIP_CERT=$pip_cert} bash -euo pipefail -c "
      cd /src/leakhunt
      . /etc/os-release; echo \"[debian13] inside: \$PRETTY_NAME, kernel \$(uname -r)\"
      SECONDS=0; bash scripts/setup.sh; echo \"[debian13] scripts/setup.sh took \$SECONDS s\"
      echo \"[debian13] tools: \$(bpftrace --version), bcc \$(dpkg-query -W -f=\"\\\${Version}\" python3-bpfcc)\"
      SECONDS=0; status=0
      $* || status=\$?
      echo \"[debian13] tests took \$SECONDS s\"
      exit \$status"
' lane "$root" "$lock" "$pip_cert" "$inner"
rc=$?
set -e
if [ "$capture" = 1 ]; then
  find "$dest/tests/fixtures" -maxdepth 1 -type f -newer "$dest/.capture-start" -print \
    -exec cp {} "$repo/tests/fixtures/" \;
fi
say "lane finished with status $rc in $(elapsed) s"
exit "$rc"
}
