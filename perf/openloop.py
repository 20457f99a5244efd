#!/usr/bin/env python3
"""Latency under pressure: open-loop runs at fixed rates against percore and its anchors.

A closed loop (wrk) waits for each answer before sending the next request, so a slow
answer also delays the requests behind it and the queueing never shows in its percentiles.
Here every request has an intended send time on a fixed schedule and its latency counts
from then (wrk2's model, coordinated omission corrected), by perf/loadgen, built in the
scratch directory. Each run reports the rate offered and achieved, p50/p90/p99/p99.9/p99.99
and max, status codes and errors by kind, server CPU per request, and how busy the
server's CPUs were (a rate's share of closed-loop capacity at 64 connections can fill them
from 2,000); its HDR histogram log goes to perf/results/openloop-STAMP/.

Suites (`--suite`, comma-separated):

- `rates`: each route at 25/50/75/90% of percore's closed-loop capacity (wrk -t1 -c64,
  measured at the start of the run) and at 1.2x and 2x of it, 64 connections, every server
  interleaved per round, beside the generator's floor (the same rate against the bare
  monoio server's /json, the cheapest answer on the machine).
- `overload`: /db and users by id at 2x capacity from 2,000 connections, and at half
  capacity for reference, with a probe (a second generator, 100 requests a second, a new
  connection for each) whose 2xx latency is what an accepted client sees; goodput is 2xx
  a second. percore with and without the door (ADMISSION_TARGET=off) and the anchors.
- `neighbour`: /db at half capacity with a CPU-bound process on CPU 0, and without it.
  With `--sched`, `perf sched record` takes 3 s from the middle of each busy run, and
  `perf sched latency` (every thread's longest wait for a CPU) and `perf sched timehist -s`
  (its CPU time) go beside the HDR logs, to tell a thread held off its CPU from a machine
  that is simply full.
- `recovery`: /db at 2x for 10 s while a half-capacity load goes on; how long after the
  2x load stops percore still refuses (its refusal counter, read every 50 ms).
- `refusals`: what a refusal costs: percore with one pool thread running one job at a time
  on /queries?queries=20 (about 2k/s) offered 40k/s — nearly every request is refused —
  against /plaintext at the same rate, CPU per request of each.
- `door`: the door's settings at 2x on /db: ADMISSION_TARGET 1/5/20 ms at 100 ms, and
  ADMISSION_INTERVAL 50/100/500 ms at 5 ms.
- `inflight`: the bound on work in flight at 2x on /db: DB_PIPELINE_JOBS 4/16/64.

    python3 perf/openloop.py --suite rates --routes json,db --rounds 3 --duration 20
    python3 perf/openloop.py --suite overload,neighbour,recovery,refusals --rounds 3

The anchors are perf/bench.py's: Go net/http (the article's service), actix-web, may-minihttp
(/json only) and xitca-web (perf/anchors/xitca-web, from crates.io: TechEmpower's own build
cannot be fetched here), each serving the database routes with one connection per worker.

Server and generator share the machine's two cores (the generator takes about one); the
database routes run against PostgreSQL on 127.0.0.1:5432 (perf/bench.py's percore_bench:
10,000 users, TechEmpower's world table), which shares them too.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import bench
from harness import free_port, wait_for_port

ROOT = bench.ROOT
PERF = bench.PERF
SCRATCH = bench.SCRATCH

# Route name → (percore's path, the loadgen's path with {id}, the bench test whose store it reads).
ROUTES = {
    "json": ("/json", "/json", "json"),
    "db": ("/db", "/db", "db"),
    "users": ("/api/v1/users/1", "/api/v1/users/{id}", "users-pg"),
    "queries": ("/queries?queries=20", "/queries?queries=20", "db"),
}
# Which anchor serves which route.
SERVES = {
    "go": {"json", "db", "users", "queries"},
    "actix-web": {"json", "db", "users", "queries"},
    "xitca-web": {"json", "db", "users", "queries"},
    "may-minihttp": {"json"},
}
# The anchors that serve /db, beside percore in the overload and neighbour suites.
DB_ANCHORS = ("go", "actix-web", "xitca-web")
RATES = [0.25, 0.5, 0.75, 0.9, 1.2, 2.0]
FLOOR_SERVER = "monoio-minimal"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pin_postgres(cpus):
    """Moves the PostgreSQL cluster (postmaster and every backend; new backends inherit)."""
    pid = str(bench.DATABASES["pg"][1])
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], check=True, stdout=subprocess.DEVNULL)
    children = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split()
    for child in children:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, child], stdout=subprocess.DEVNULL)
    log(f"-- PostgreSQL ({1 + len(children)} processes) on CPUs {cpus}")


def build_loadgen():
    crate = SCRATCH / "loadgen"
    shutil.copytree(PERF / "loadgen", crate, dirs_exist_ok=True)
    log("-- building perf/loadgen")
    bench.run(["cargo", "build", "--release", "--quiet"], cwd=crate)
    return str(crate / "target" / "release" / "percore-loadgen")


class Running:
    """A server started for one measurement, killed afterwards."""

    def __init__(self, server, route, extra_env=None, cpus=None):
        self.server = server
        test = bench.TESTS[ROUTES[route][2]]
        self.port = server.port or free_port()
        env = dict(os.environ)
        env.update(server.env(self.port, test))
        env.update(extra_env or {})
        cmd = server.command(server.binary, self.port, test)
        cpus = cpus or SERVER_CPUS
        if cpus:
            cmd = ["taskset", "-c", cpus] + cmd
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=bench.raise_fd_limit)
        if not wait_for_port(self.port, alive=lambda: self.proc.poll() is None):
            self.stop()
            raise RuntimeError(f"{server.name} did not start")
        # The database routes answer only once the pool has connected.
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and http_status(self.port, ROUTES[route][0]) not in (200, 404):
            time.sleep(0.05)

    def cpu(self):
        return bench.cpu_seconds(self.proc.pid)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def http_status(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
            return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else None
    except (OSError, ValueError, IndexError):
        return None


def metrics_text(port):
    """percore's /metrics page, or None if it cannot be read."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            text = b""
            while chunk := s.recv(65536):
                text += chunk
            return text
    except OSError:
        return None


def queue_wait(port):
    """The store queue's wait over the run, from percore's `db_pool_wait_seconds`: how many
    jobs, and the bucket bounds (ms) that hold half and 99% of them, and the share of jobs
    that waited longer than 5 ms. Tells whether the order of the queue (LIFO) could matter."""
    text = metrics_text(port)
    if text is None:
        return None
    buckets = sorted((float("inf") if le == b"+Inf" else float(le), float(n)) for le, n in re.findall(rb'^db_pool_wait_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M))
    if not buckets or not buckets[-1][1]:
        return None
    total = buckets[-1][1]
    bound = lambda q: next(le * 1000 for le, n in buckets if n >= q * total)
    within_5ms = max((n for le, n in buckets if le <= 0.005), default=0)
    return {"jobs": int(total), "p50_ms_at_most": bound(0.5), "p99_ms_at_most": bound(0.99), "over_5ms": round(1 - within_5ms / total, 4)}


def metric(port, name):
    """The sum of a metric's samples on percore's /metrics."""
    text = metrics_text(port)
    if text is None:
        return None
    values = re.findall(rb"^" + re.escape(name.encode()) + rb"(?:\{[^}]*\})? (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def loadgen(args, url, rate, conns, duration, warmup, hdr=None, fresh=False, cpus=None, probe=False):
    cmd = [LOADGEN, "--url", url, "--rate", str(int(rate)), "--connections", str(conns), "--duration", str(duration + warmup), "--warmup", str(warmup)]
    if "{id}" in url:
        cmd += ["--ids", str(bench.USERS)]
    if fresh:
        cmd.append("--fresh")
    if hdr:
        cmd += ["--hdr-log", str(hdr)]
    if probe and LAYOUT == "pinned":
        # The probe stands for a client that is not part of the flood: it must not queue
        # behind the flood's generator for CPU 1.
        cmd = ["nice", "-n", "-15"] + cmd
    cpus = cpus or GENERATOR_CPUS
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=bench.raise_fd_limit)


def finish(p):
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.strip()}")
    return json.loads(out)


def sched_record(args, tag):
    """With --sched: 3 s of `perf sched record` from the middle of the run, summarised."""
    data = SCRATCH / "sched.data"
    time.sleep(args.warmup + max(args.duration / 2 - 1.5, 0))
    subprocess.run(["perf", "sched", "record", "-o", str(data), "--", "sleep", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latency = subprocess.run(["perf", "sched", "latency", "-i", str(data), "--sort", "max"], capture_output=True, text=True).stdout
    timehist = subprocess.run(["perf", "sched", "timehist", "-i", str(data), "-s"], capture_output=True, text=True).stdout
    summary = "\n".join(line for line in timehist.splitlines() if re.search(r"percore|postgres|loadgen|xitca|actix|may|nethttp|\bsh\[", line))
    (HDR_DIR / f"{tag}-sched.txt").write_text(f"## perf sched latency --sort max\n{latency}\n## perf sched timehist -s (run time ms, then min/avg/max run)\n{summary}\n")


def cpu_times():
    """Per CPU, (all jiffies, idle + iowait jiffies) from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(f) for f in fields]
            times[int(name[3:])] = (sum(v), v[3] + v[4])
    return times


def busy_share(before, after):
    """How busy the server's CPUs were between two `cpu_times()` (both CPUs in the shared
    layout, where the generator and PostgreSQL run too; CPU 0 in the pinned one): whether
    the machine had room left, which a rate's share of closed-loop capacity does not say."""
    cpus = [int(c) for c in SERVER_CPUS.split(",")] if SERVER_CPUS else sorted(after)
    total = sum(after[c][0] - before[c][0] for c in cpus)
    idle = sum(after[c][1] - before[c][1] for c in cpus)
    return 1 - idle / total if total else float("nan")


def one_run(args, server, route, rate, conns, tag, extra_env=None, probe_rate=0, neighbour=False):
    """One measurement on a fresh server process: the load (and a probe), CPU per request."""
    path = ROUTES[route][1]
    path = server.paths.get(path, path)
    hog = None
    if neighbour:
        hog = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
    running = Running(server, route, extra_env)
    try:
        hdr = HDR_DIR / f"{tag}.hlog"
        cpu_before, times_before = running.cpu(), cpu_times()
        main = loadgen(args, running.url(path), rate, conns, args.duration, args.warmup, hdr=hdr)
        probe = loadgen(args, running.url(path), probe_rate, 4, args.duration, args.warmup, hdr=HDR_DIR / f"{tag}-probe.hlog", fresh=True, probe=True) if probe_rate else None
        if neighbour and getattr(args, "sched", False):
            sched_record(args, tag)
        result = finish(main)
        cpu = running.cpu() - cpu_before
        result["cpus_busy"] = busy_share(times_before, cpu_times())
        # CPU over warm-up and run, per request answered over both (the warm-up at the same rate).
        total = result["completed"] * (args.duration + args.warmup) / args.duration
        result["cpu_us"] = cpu / total * 1e6 if total else float("nan")
        if probe:
            result["probe"] = finish(probe)
        if server.name.startswith("percore"):
            result["refused"] = metric(running.port, "db_admission_refusals_total")
            result["refused_by"] = {reason: metric(running.port, f'db_admission_refusals_total{{reason="{reason}"}}') for reason in ("standing_queue", "loop_lag", "queue_full")}
            result["queue_wait"] = queue_wait(running.port)
        return result
    finally:
        running.stop()
        if hog:
            hog.kill()
            hog.wait()


def capacity(server, route, args):
    """percore's closed-loop capacity on `route`: wrk -t1 -c64, median of three 5 s runs."""
    path = ROUTES[route][0]
    running = Running(server, route)
    try:
        results = []
        test = bench.TESTS[ROUTES[route][2]]
        for _ in range(3):
            cmd = (["taskset", "-c", GENERATOR_CPUS] if GENERATOR_CPUS else []) + ["wrk", "-t1", "-c64", "-d5s"]
            if test.script:
                cmd += ["-s", str(PERF / test.script)]
            out = subprocess.run(cmd + [running.url(path)], capture_output=True, text=True).stdout
            results.append(bench.parse_wrk(out)["rps"])
        return statistics.median(results)
    finally:
        running.stop()


def summary(r):
    lat = r.get("ok_latency_ms") or r.get("latency_ms") or {}
    status = ",".join(f"{k}:{v}" for k, v in r["status"].items())
    errors = ",".join(f"{k}:{v}" for k, v in r["errors"].items() if v)
    return f"{r['achieved_rate']:.0f}/s ok {r['ok_rate']:.0f}/s p50 {lat.get('p50')} p99 {lat.get('p99')} p99.9 {lat.get('p99.9')} max {lat.get('max')} ms, {r['cpu_us']:.1f} µs CPU, [{status}] {errors}"


def med(runs, key, sub="latency_ms"):
    values = [r[sub][key] for r in runs if r.get(sub)]
    return statistics.median(values) if values else float("nan")


def suite_rates(args, servers, results):
    for route in args.routes:
        cap = args.capacity.get(route) or capacity(servers["percore"], route, args)
        log(f"== {route}: percore's closed-loop capacity {cap:.0f} req/s")
        results.setdefault("capacity", {})[route] = cap
        for share in args.rates:
            rate = cap * share
            for n in range(args.rounds):
                for name, server in servers.items():
                    if not name.startswith("percore") and name != FLOOR_SERVER and route not in SERVES.get(name, set()):
                        continue
                    if name == FLOOR_SERVER and share > 1:
                        continue
                    r_route = "json" if name == FLOOR_SERVER else route
                    tag = f"rates-{route}-{share}-{name}-{n}"
                    try:
                        r = one_run(args, server, r_route, rate, 64, tag)
                    except Exception as e:
                        log(f"!! {tag}: {e}")
                        continue
                    log(f"-- {route} {share:.2f}x ({rate:.0f}/s) round {n + 1} {name}: {summary(r)}")
                    results.setdefault("rates", {}).setdefault(route, {}).setdefault(str(share), {}).setdefault(name, []).append(r)


def suite_overload(args, servers, results, variants=None, shares=(0.5, 2.0), key="overload", routes=("db", "users")):
    variants = variants or {
        "percore": (servers["percore"], {}),
        "percore, loop-lag door too": (servers["percore"], {"ADMISSION_LOOP_LAG": "on"}),
        "percore, no door": (servers["percore"], {"ADMISSION_TARGET": "off"}),
        # Other percore builds or settings named in --servers (`percore-baseline`,
        # `percore[DB_QUEUE_DEPTH=4096]`) run beside the default, as they are.
        **{name: (s, {}) for name, s in servers.items() if name.startswith("percore") and name != "percore"},
        **{name: (servers[name], {}) for name in DB_ANCHORS if name in servers},
    }
    # --routes narrows the suite (its default names both).
    for route in [r for r in routes if r in args.routes]:
        cap = args.capacity.get(route) or results.get("capacity", {}).get(route) or capacity(servers["percore"], route, args)
        results.setdefault("capacity", {})[route] = cap
        for share in shares:
            for n in range(args.rounds):
                for label, (server, env) in variants.items():
                    if not server.name.startswith("percore") and route not in SERVES.get(server.name, set()):
                        continue
                    tag = f"{key}-{route}-{share}-{label.replace(' ', '').replace(',', '-').replace('=', '')}-{n}"
                    try:
                        r = one_run(args, server, route, cap * share, args.overload_connections, tag, env, probe_rate=100)
                    except Exception as e:
                        log(f"!! {tag}: {e}")
                        continue
                    p = r["probe"]
                    log(f"-- {key} {route} {share}x round {n + 1} {label}: {summary(r)}; probe ok p99 {(p.get('ok_latency_ms') or {}).get('p99')} ms, probe status {p['status']}, refused {r.get('refused_by') or r.get('refused')}, queue wait {r.get('queue_wait')}")
                    results.setdefault(key, {}).setdefault(route, {}).setdefault(str(share), {}).setdefault(label, []).append(r)


def suite_neighbour(args, servers, results):
    route = "db"
    cap = args.capacity.get(route) or results.get("capacity", {}).get(route) or capacity(servers["percore"], route, args)
    results.setdefault("capacity", {})[route] = cap
    for n in range(args.rounds):
        for name in [n for n in servers if n.startswith("percore") or n in DB_ANCHORS]:
            for hog in (False, True):
                tag = f"neighbour-{name}-{'busy' if hog else 'quiet'}-{n}"
                try:
                    r = one_run(args, servers[name], route, cap * 0.5, 64, tag, neighbour=hog)
                except Exception as e:
                    log(f"!! {tag}: {e}")
                    continue
                log(f"-- neighbour {'busy' if hog else 'quiet'} round {n + 1} {name}: {summary(r)}")
                results.setdefault("neighbour", {}).setdefault(name, {}).setdefault("busy" if hog else "quiet", []).append(r)


def suite_recovery(args, servers, results):
    route = "db"
    cap = args.capacity.get(route) or results.get("capacity", {}).get(route) or capacity(servers["percore"], route, args)
    for n in range(args.rounds):
        running = Running(servers["percore"], route)
        try:
            url = running.url(ROUTES[route][1])
            base = loadgen(args, url, cap * 0.5, 64, 20, 0)
            time.sleep(2)
            burst = loadgen(args, url, cap * 1.5, args.overload_connections, 10, 0)
            burst_result = finish(burst)
            ended = time.perf_counter()
            last_change, last = ended, metric(running.port, "db_admission_refusals_total")
            while time.perf_counter() - ended < 5:
                time.sleep(0.05)
                now = metric(running.port, "db_admission_refusals_total")
                if now != last:
                    last, last_change = now, time.perf_counter()
            finish(base)
            seconds = last_change - ended
            log(f"-- recovery round {n + 1}: refusals during the 2x load {burst_result['status'].get('503', 0)}, last refusal {seconds:.2f} s after it stopped")
            results.setdefault("recovery", []).append({"last_refusal_after_s": seconds, "burst": burst_result})
        finally:
            running.stop()


def suite_refusals(args, servers, results):
    rate = 40000
    pc = servers["percore"]
    for n in range(args.rounds):
        for label, route, env in (
            ("refused", "queries", {"DB_POOL_SIZE": "1", "DB_PIPELINE_JOBS": "1"}),
            ("plaintext", "json", {}),
        ):
            path = "/plaintext" if label == "plaintext" else ROUTES[route][1]
            running = Running(pc, route, env)
            try:
                before = running.cpu()
                r = finish(loadgen(args, running.url(path), rate, 256, args.duration, args.warmup, hdr=HDR_DIR / f"refusals-{label}-{n}.hlog"))
                used = running.cpu() - before
                total = r["completed"] * (args.duration + args.warmup) / args.duration
                r["cpu_us"] = used / total * 1e6
                log(f"-- refusals round {n + 1} {label}: {summary(r)}")
                results.setdefault("refusals", {}).setdefault(label, []).append(r)
            finally:
                running.stop()


def suite_door(args, servers, results):
    pc = servers["percore"]
    variants = {f"target {t}": (pc, {"ADMISSION_TARGET": t}) for t in ("1ms", "5ms", "20ms")}
    variants.update({f"interval {i}": (pc, {"ADMISSION_INTERVAL": i}) for i in ("50ms", "500ms")})
    suite_overload(args, servers, results, variants, shares=(2.0,), key="door", routes=("db",))


def suite_inflight(args, servers, results):
    pc = servers["percore"]
    variants = {f"DB_PIPELINE_JOBS={j}": (pc, {"DB_PIPELINE_JOBS": str(j)}) for j in (4, 16, 64)}
    suite_overload(args, servers, results, variants, shares=(2.0,), key="inflight", routes=("db",))


def busy(runs):
    """The median share of the server's CPUs busy, as a table cell."""
    shares = [r["cpus_busy"] for r in runs if "cpus_busy" in r]
    return f"{statistics.median(shares) * 100:.0f}%" if shares else "—"


def render(results, args):
    lines = [
        f"# percore open-loop runs, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- machine: `{subprocess.run(['uname', '-a'], capture_output=True, text=True).stdout.strip()}`, nproc {os.cpu_count()}",
        f"- command: `python3 perf/openloop.py {' '.join(sys.argv[1:])}`",
        f"- layout: {'server and PostgreSQL on CPU 0, generators on CPU 1 (the probe at nice -15)' if args.layout == 'pinned' else 'server, PostgreSQL and generators share both CPUs'}",
        f"- perf/loadgen, {args.duration} s after {args.warmup} s warm-up at the same rate, medians of {args.rounds} interleaved rounds; latency in ms from each request's intended send time",
        "",
    ]
    if "capacity" in results:
        lines += ["closed-loop capacity (wrk -t1 -c64): " + ", ".join(f"{k} {v:.0f} req/s" for k, v in results["capacity"].items()), ""]
    for route, by_share in results.get("rates", {}).items():
        lines += [f"## {route}: 64 connections", "", "| offered | server | achieved/s | p50 | p90 | p99 | p99.9 | p99.99 | max | CPU µs/req | CPUs busy | non-2xx | errors |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for share, by_server in by_share.items():
            for name, runs in by_server.items():
                label = "floor (monoio /json)" if name == FLOOR_SERVER else name
                non2xx = statistics.median([sum(v for k, v in r["status"].items() if not k.startswith("2")) for r in runs])
                errors = statistics.median([sum(r["errors"].values()) for r in runs])
                lines.append(
                    f"| {float(share):.2f}x {statistics.median([r['offered_rate'] for r in runs]):.0f} | {label} | {statistics.median([r['achieved_rate'] for r in runs]):.0f} | "
                    + " | ".join(f"{med(runs, k):.2f}" for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max"))
                    + f" | {statistics.median([r['cpu_us'] for r in runs]):.1f} | {busy(runs)} | {non2xx:.0f} | {errors:.0f} |"
                )
        lines.append("")
    for key in ("overload", "door", "inflight"):
        for route, by_share in results.get(key, {}).items():
            lines += [
                f"## {key}: {route}, {args.overload_connections} connections, with a probe (100/s, a new connection each)",
                "",
                "| offered | server | goodput 2xx/s | 503/s | load p99 (all) | probe 2xx p50 | probe 2xx p99 | probe 2xx p99.9 | probe 503 | CPU µs/req | CPUs busy | errors |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for share, by_label in by_share.items():
                for label, runs in by_label.items():
                    probes = [r["probe"] for r in runs]
                    lines.append(
                        f"| {float(share):.1f}x {statistics.median([r['offered_rate'] for r in runs]):.0f} | {label} | {statistics.median([r['ok_rate'] for r in runs]):.0f} | "
                        f"{statistics.median([r['status'].get('503', 0) / r['seconds'] for r in runs]):.0f} | {med(runs, 'p99'):.1f} | "
                        f"{med(probes, 'p50', 'ok_latency_ms'):.2f} | {med(probes, 'p99', 'ok_latency_ms'):.2f} | {med(probes, 'p99.9', 'ok_latency_ms'):.2f} | "
                        f"{statistics.median([p['status'].get('503', 0) for p in probes]):.0f} | {statistics.median([r['cpu_us'] for r in runs]):.1f} | {busy(runs)} | {statistics.median([sum(r['errors'].values()) for r in runs]):.0f} |"
                    )
            lines.append("")
    if "neighbour" in results:
        lines += ["## neighbour: /db at half capacity, 64 connections, a busy loop on CPU 0", "", "| server | | achieved/s | p50 | p99 | p99.9 | p99.99 | CPU µs/req | CPUs busy |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, by_state in results["neighbour"].items():
            for state, runs in by_state.items():
                lines.append(f"| {name} | {state} | {statistics.median([r['achieved_rate'] for r in runs]):.0f} | " + " | ".join(f"{med(runs, k):.2f}" for k in ("p50", "p99", "p99.9", "p99.99")) + f" | {statistics.median([r['cpu_us'] for r in runs]):.1f} | {busy(runs)} |")
        lines.append("")
    if "recovery" in results:
        after = [r["last_refusal_after_s"] for r in results["recovery"]]
        lines += [f"## recovery: the last refusal came {statistics.median(after):.2f} s (median; runs: {', '.join(f'{a:.2f}' for a in after)}) after a 1.5x-on-top burst stopped", ""]
    if "refusals" in results:
        lines += ["## what a refusal costs: 40k/s offered, 256 connections", "", "| answer | achieved/s | 503 share | CPU µs/req | p99 |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, runs in results["refusals"].items():
            share = statistics.median([r["status"].get("503", 0) / max(r["completed"], 1) for r in runs])
            lines.append(f"| {label} | {statistics.median([r['achieved_rate'] for r in runs]):.0f} | {share:.3f} | {statistics.median([r['cpu_us'] for r in runs]):.2f} | {med(runs, 'p99'):.2f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    global LOADGEN, HDR_DIR, LAYOUT, SERVER_CPUS, GENERATOR_CPUS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="rates")
    p.add_argument("--routes", default="json,db,users,queries")
    p.add_argument("--servers", default="percore,go,actix-web,xitca-web,may-minihttp")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--overload-connections", type=int, default=2000)
    p.add_argument("--capacity", default="", help="route=req/s,…: skip measuring these capacities")
    p.add_argument("--rates", default=",".join(str(r) for r in RATES), help="shares of capacity for the rates suite")
    p.add_argument("--out", default=str(PERF / "results"))
    p.add_argument("--sched", action="store_true", help="neighbour suite: perf sched record 3 s of each busy run")
    p.add_argument("--layout", choices=("shared", "pinned"), default="shared", help="pinned: server and PostgreSQL on CPU 0, generators on CPU 1, the probe at nice -15")
    args = p.parse_args()
    args.routes = args.routes.split(",")
    args.rates = [float(r) for r in args.rates.split(",")]
    args.capacity = {k: float(v) for k, v in (kv.split("=") for kv in args.capacity.split(",") if kv)}
    suites = args.suite.split(",")
    LAYOUT = args.layout
    if LAYOUT == "pinned":
        SERVER_CPUS, GENERATOR_CPUS = "0", "1"

    SCRATCH.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    HDR_DIR = Path(args.out) / f"openloop-{stamp}"
    HDR_DIR.mkdir(parents=True, exist_ok=True)
    LOADGEN = build_loadgen()
    known = bench.servers()
    names = re.split(r",(?![^\[]*\])", args.servers)
    if "rates" in suites:
        names.append(FLOOR_SERVER)
    servers = {}
    for name in names:
        s = bench.server_named(known, name)
        s.build()
        if s.binary:
            servers[name] = s
    bench.prepare_stores(["db", "users-pg"], servers["percore"].binary)

    results = {}
    if LAYOUT == "pinned":
        pin_postgres("0")
    try:
        for suite in suites:
            {"rates": suite_rates, "overload": suite_overload, "neighbour": suite_neighbour, "recovery": suite_recovery, "refusals": suite_refusals, "door": suite_door, "inflight": suite_inflight}[suite](args, servers, results)
            (HDR_DIR / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        if LAYOUT == "pinned":
            pin_postgres(",".join(str(c) for c in range(os.cpu_count())))

    report = render(results, args)
    print(report)
    path = Path(args.out) / f"{stamp}-openloop.md"
    path.write_text(report)
    log(f"written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; HDR logs and raw results in {HDR_DIR.relative_to(ROOT) if HDR_DIR.is_relative_to(ROOT) else HDR_DIR}")


LOADGEN = None
HDR_DIR = None
LAYOUT = "shared"
SERVER_CPUS = None
GENERATOR_CPUS = None

if __name__ == "__main__":
    main()
