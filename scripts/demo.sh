#!/usr/bin/env bash
# The demo: set the machine up (scripts/setup.sh, idempotent), build the toy leaky server shipped in
# tests/targets/demo_leaky.c, run it under `leakhunt run`, and write the reports (HTML, Markdown,
# JSON) into reports/.
#   sudo bash scripts/demo.sh
#   DEMO_SECONDS=40 DEMO_BACKEND=bcc sudo -E bash scripts/demo.sh
# The leak: parse_header() copies a request header that handle_request() forgets to free on its
# error path. The 1 MiB routing table loaded at start is bigger, but stable: it must rank below.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${DEMO_SECONDS:-30}
backend=${DEMO_BACKEND:-auto}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 3 ]; then
  echo "scripts/demo.sh: DEMO_SECONDS must be a whole number of seconds, 3 or more (got '$seconds')" >&2
  exit 2
fi
# at least 6 snapshots whatever DEMO_SECONDS is (one or two cannot show growth: status 4)
interval=$(( seconds >= 30 ? 5 : (seconds >= 12 ? seconds / 6 : 1) ))
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh: probing needs root: run it with sudo" >&2
  exit 2
fi
bash scripts/setup.sh
mkdir -p tests/targets/bin
bin=tests/targets/bin/demo_leaky
if ! [ -x "$bin" ] || [ tests/targets/demo_leaky.c -nt "$bin" ]; then
  gcc -O1 -g -fno-omit-frame-pointer -o "$bin" tests/targets/demo_leaky.c
fi
echo "[demo] leakhunt run --backend $backend --duration $((seconds + 10)) --interval $interval -- $bin $seconds"
.venv/bin/leakhunt run --backend "$backend" --duration "$((seconds + 10))" --interval "$interval" \
  --output-dir reports --format html,md,json -- "$bin" "$seconds"
echo "[demo] open the newest reports/leakhunt-investigation-demo_leaky-*.html in a browser"
