#!/bin/bash
# The crossing to the pool at a fixed rate: system calls, context switches and CPU a request
# on the workers and on the pool threads (perf stat --per-thread, 6 s in the middle of a
# 14 s open-loop run of perf/loadgen on /db, 64 connections), server and PostgreSQL CPU a
# request, and the run's latency. Against percore_bench on 127.0.0.1:5432 (perf/bench.py
# seeds it) and the loadgen perf/openloop.py builds in the scratch directory.
#
#   perf/crossing.sh target/release/percore 24000
#   perf/crossing.sh /tmp/percore-bench/baseline-target/release/percore 24000
#   EXTRA="DB_POOL_SIZE=2" perf/crossing.sh target/release/percore 12000
#
# Then 2 s of `perf record -e raw_syscalls:sys_enter` name the system calls a request
# costs, per side (`perf trace -s` undercounts them here).
set -euo pipefail
bin=$1; rate=$2
scratch=${PERCORE_BENCH_SCRATCH:-/tmp/percore-bench}
loadgen=$scratch/loadgen/target/release/percore-loadgen
pgdata=$(psql -h 127.0.0.1 -U postgres -Atc "SHOW data_directory")
port=8099
stat=$(mktemp); out=$(mktemp); rec=$(mktemp)
trap 'rm -f "$stat" "$out" "$rec"; kill $pid 2>/dev/null || true' EXIT
env SERVER_HOST=127.0.0.1 SERVER_PORT=$port BENCH_ROUTES=1 DEBUG_ADDR= RUST_LOG=warn DB_SSLMODE=disable \
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/percore_bench ${EXTRA:-} "$bin" & pid=$!
sleep 1.5
pgcpu() {
  local pm s=0; pm=$(head -1 "$pgdata/postmaster.pid")
  for p in $pm $(pgrep -P "$pm"); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done
  echo $s
}
"$loadgen" --url http://127.0.0.1:$port/db --rate "$rate" --connections 64 --duration 14 --warmup 2 > "$out" & lg=$!
sleep 4
p0=$(pgcpu); t0=$(awk '{print $14+$15}' /proc/$pid/stat)
perf stat --per-thread -e raw_syscalls:sys_enter -e context-switches -e task-clock -p $pid -o "$stat" -- sleep 6
t1=$(awk '{print $14+$15}' /proc/$pid/stat); p1=$(pgcpu)
perf record -q -e raw_syscalls:sys_enter -p $pid -o "$rec" -- sleep 2 >/dev/null 2>&1
calls=$(perf script -i "$rec" -F comm,trace 2>/dev/null | awk '{c=$1; sub(/[0-9-]+$/,"",c); print c, $3}' | sort | uniq -c)
wait $lg
python3 - "$stat" "$out" "$rate" "$((t1 - t0))" "$((p1 - p0))" "$calls" <<'PY'
import json, re, sys
stat, out, rate, server, pg, calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
n = rate * 6
tick = 1e6 / 100  # µs per clock tick
agg = {}
for line in open(stat):
    m = re.match(r"\s*percore-(w|db)\d+-\d+\s+([\d.,]+)\s+(msec\s+)?(\S+)", line)
    if m:
        key = (m.group(1), m.group(4).split(":")[-1])
        agg[key] = agg.get(key, 0) + float(m.group(2).replace(",", ""))
r = json.load(open(out)); l = r["latency_ms"]
print(f"offered {rate:.0f}/s achieved {r['achieved_rate']:.0f}/s, p50 {l['p50']} p99 {l['p99']} p99.9 {l['p99.9']} ms, errors {sum(r['errors'].values())}, status {r['status']}")
print(f"CPU a request: server {server * tick / n:.1f} µs, PostgreSQL {pg * tick / n:.1f} µs")
for who, name in (("w", "workers"), ("db", "pool threads")):
    print(f"{name}: {agg.get((who, 'sys_enter'), 0) / n:.2f} syscalls, {agg.get((who, 'context-switches'), 0) / n:.2f} context switches, {agg.get((who, 'task-clock'), 0) * 1000 / n:.1f} µs CPU a request")
# x86_64 numbers of the calls these threads make.
names = {"0": "read", "1": "write", "7": "poll", "24": "sched_yield", "28": "madvise", "44": "sendto", "45": "recvfrom",
         "202": "futex", "232": "epoll_wait", "281": "epoll_pwait", "426": "io_uring_enter"}
by = {}
for line in calls.splitlines():
    count, comm, nr = line.split()
    who = {"percore-w": "workers", "percore-db": "pool threads"}.get(comm)
    if who:
        by.setdefault(who, []).append((int(count) / (rate * 2), names.get(nr, f"#{nr}")))
for who, rows in by.items():
    print(f"{who}, a request: " + ", ".join(f"{name} {k:.2f}" for k, name in sorted(rows, reverse=True) if k >= 0.01))
PY
