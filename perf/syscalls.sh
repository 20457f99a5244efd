#!/bin/bash
# Postgres system calls and context switches per statement, and the server's per request,
# over 5 s under wrk -c256 (perf stat on the backends and on the server; statements from
# pg_stat_statements). Against perf/tfb.py's private cluster, which must be up (a bench.py
# run with a tfb-* test starts it; so does `python3 -c "import tfb; ..."` from perf/).
#
#   perf/syscalls.sh percore "/queries?queries=20" target/release/percore
#   perf/syscalls.sh xitca "/queries?q=20" "$SCRATCH/tfb/xitca-web/target/release/xitca-web"
#
# NAME starting with "percore" runs BINARY with percore's environment; others run as built
# (TechEmpower's entries listen on 8080).
name=$1; path=$2; bin=$3; shift 3
pgstat=$(mktemp); srvstat=$(mktemp)
trap 'rm -f "$pgstat" "$srvstat"' EXIT
URL=postgres://benchmarkdbuser:benchmarkdbpass@127.0.0.1:5488/hello_world
if [[ $name == percore* ]]; then
  env SERVER_HOST=127.0.0.1 SERVER_PORT=8080 BENCH_ROUTES=1 DEBUG_ADDR= RUST_LOG=warn DATABASE_URL=$URL "$@" $bin & pid=$!
else
  $bin >/dev/null 2>&1 & pid=$!
fi
sleep 1.5
wrk -t2 -c256 -d2s "http://127.0.0.1:8080$path" >/dev/null
pm=$(head -1 ${PERCORE_BENCH_SCRATCH:-/tmp/percore-bench}/tfb-pg/data/postmaster.pid)
backends=$(pgrep -P $pm -d, )
psql $URL -Atqc "SELECT pg_stat_statements_reset()" >/dev/null
before=$(psql $URL -Atc "SELECT coalesce(sum(calls),0) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'")
perf stat -e raw_syscalls:sys_enter -e context-switches -p $backends -o "$pgstat" -- sleep 5 &
perf stat -e raw_syscalls:sys_enter -e context-switches -p $pid -o "$srvstat" -- sleep 5 &
out=$(wrk -t2 -c256 -d5s "http://127.0.0.1:8080$path")
wait %2 %3 2>/dev/null; sleep 0.5
after=$(psql $URL -Atc "SELECT coalesce(sum(calls),0) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'")
reqs=$(echo "$out" | grep 'requests in' | awk '{print $1}')
pgsys=$(grep raw_syscalls "$pgstat" | awk '{gsub(",","",$1); print $1}')
pgcs=$(grep context-switches "$pgstat" | awk '{gsub(",","",$1); print $1}')
srvsys=$(grep raw_syscalls "$srvstat" | awk '{gsub(",","",$1); print $1}')
srvcs=$(grep context-switches "$srvstat" | awk '{gsub(",","",$1); print $1}')
stm=$((after-before-1))
python3 -c "print(f'$name $path: {$reqs/5:.0f} req/s; Postgres {$pgsys/$stm:.2f} syscalls/statement, {$pgcs/$stm:.2f} cs/statement; server {$srvsys/$reqs:.1f} syscalls/req, {$srvcs/$reqs:.2f} cs/req; {$stm/$reqs:.2f} statements/req')"
kill $pid; wait $pid 2>/dev/null
