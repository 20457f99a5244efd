#!/usr/bin/env bash
# Flame graph of percore under load: perf record -g (frame pointers) + inferno.
#
#   perf/flame.sh [ROUTE] [SECONDS]     e.g. perf/flame.sh /json 10
#                                            perf/flame.sh /api/v1/users 10   (random ids over 10,000 users, SQLite)
#
# Builds percore in release (symbols and frame pointers are kept), starts it with
# BENCH_ROUTES=1, drives ROUTE with wrk -t1 -c64 while `perf record` samples the server,
# and writes perf/results/flame-<route>-<date>.svg. Needs linux-perf and wrk (Debian) and
# inferno (installed with `cargo install inferno` when missing). Hardware counters are often
# absent in VMs, so it samples the cpu-clock software event.
set -euo pipefail
cd "$(dirname "$0")/.."
route="${1:-/json}"
seconds="${2:-10}"
command -v perf >/dev/null || { echo "perf is needed: apt install linux-perf" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed: apt install wrk" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked

cargo build --release --quiet
scratch=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$scratch"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SERVER_HOST=127.0.0.1 SERVER_PORT="$port" BENCH_ROUTES=1 DEBUG_ADDR= RUST_LOG=warn SQLITE_PATH="$scratch/flame.db" \
  ./target/release/percore &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done

url="http://127.0.0.1:$port$route"
script=()
if [[ "$route" == /api/v1/users* ]]; then
  python3 - "$scratch/flame.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executemany("INSERT INTO users (name, email) VALUES (?, ?)", ((f"User {i}", f"user{i}@example.com") for i in range(1, 10001)))
db.commit()
PY
  script=(-s perf/random_user.lua)
  url="http://127.0.0.1:$port/api/v1/users/1"
fi

wrk -t1 -c64 -d"$((seconds + 2))s" "${script[@]}" "$url" >/dev/null &
load=$!
sleep 1
perf record -e cpu-clock -F 999 -g -p "$server" -o "$scratch/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$load"

mkdir -p perf/results
name=$(echo "$route" | tr -c 'a-zA-Z0-9\n' '-' | sed 's/^-*//; s/-*$//')
out="perf/results/flame-${name:-root}-$(date +%Y-%m-%d).svg"
perf script -i "$scratch/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "percore $route" > "$out"
echo "$out"
