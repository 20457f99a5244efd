#!/usr/bin/env python3
"""percore's benchmark harness: percore against its anchors, side by side, same machine.

Builds percore (release) and each anchor, runs every server alone on a fresh process per
run, drives it with wrk over loopback, and reports per server and test the median of the
interleaved runs (A B A B …): requests per second, p50/p99 latency, socket errors, non-2xx
responses, peak RSS (VmHWM) and server CPU seconds per 100k requests (utime + stime from
/proc/PID/stat over the measured window). The table, with ratios to percore, the date and
the machine (`uname -a`, `nproc`), is printed and written to perf/results/.

Layouts: `shared` (server and wrk on both cores) and `pinned` (server on CPU 0 with
taskset, wrk on CPU 1). On a 2-core machine wrk needs about one core, so CPU per request is
the fairest figure; throughput ratios between interleaved runs are the next best.
wrk's own CPU per request is reported too: where wrk's core is the limit (pipelining, the
pinned layout), a server whose responses cost wrk more to parse — more bytes, more header
lines — gets fewer requests per second however little CPU it uses itself.

    python3 perf/bench.py                               # plaintext + json, percore vs Go
    python3 perf/bench.py --tests json --runs 5 --duration 10
    python3 perf/bench.py --servers percore --tests plaintext --layout pinned
    python3 perf/bench.py --tests users-pg,users-sqlite  # GET /api/v1/users/{id}, 10,000 users
    python3 perf/bench.py --tests users-pg --servers 'percore[DB_POOL_SIZE=2],percore[DB_POOL_SIZE=8]'

A server name may carry extra environment in brackets: `percore[DB_POOL_SIZE=2]`.
`percore-baseline` is percore as committed at PERCORE_BASELINE (default HEAD), built in a
worktree, so `--servers percore,percore-baseline` measures an uncommitted change.
The database tests need PostgreSQL on 127.0.0.1:5432 (PERCORE_BENCH_PG to change it); the
harness recreates the database `percore_bench` and seeds it with 10,000 users.

The TechEmpower database tests (tfb-db, tfb-queries, tfb-fortunes, tfb-updates) run against a
private PostgreSQL with TechEmpower's postgresql.conf and schema (perf/tfb.py), and so do
their anchors tfb-may-minihttp, tfb-xitca-web and tfb-actix, built from TechEmpower's
repository snapshot:

    python3 perf/bench.py --servers percore,tfb-may-minihttp,tfb-xitca-web,tfb-actix \
        --tests tfb-db,tfb-queries,tfb-fortunes,tfb-updates --runs 5 --duration 8

Database tests report Postgres's CPU per request beside the server's (every process of the
cluster, from /proc) and, where pg_stat_statements is loaded (the private cluster), the
statements Postgres ran per request.

An anchor that fails to build is reported and skipped; the run goes on.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tfb
from harness import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"
SCRATCH = Path(os.environ.get("PERCORE_BENCH_SCRATCH", Path(tempfile.gettempdir()) / "percore-bench"))

PG_ADMIN = os.environ.get("PERCORE_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BENCH = PG_ADMIN.rsplit("/", 1)[0] + "/percore_bench"
SQLITE_BENCH = SCRATCH / "users.db"
USERS = 10_000


class Test:
    def __init__(self, path, conns=256, depth=1, script=None, store=None, close=False, script_args=(), tls=False, resume=True):
        self.path, self.conns, self.depth, self.script, self.store = path, conns, depth, script, store
        self.script_args = list(script_args)
        # `Connection: close` on every request: one connection per request (accept-heavy).
        self.close = close
        # Over HTTPS, with the same ECDSA P-256 certificate for every server (tls_files());
        # `resume`: the servers offer session resumption (wrk resumes where it can).
        self.tls, self.resume = tls, resume


TESTS = {
    "plaintext": Test("/plaintext"),
    "json": Test("/json"),
    "pipelined": Test("/plaintext", depth=16),
    "json-5000": Test("/json", conns=5000),
    "db": Test("/db", store="pg"),
    # Issue 26's overload case and the article's many-connection line, on the store: what a
    # request costs when 2,000 clients wait on it at once.
    "db-2000": Test("/db", conns=2000, store="pg"),
    # TechEmpower's fortunes and 20 queries against percore_bench (its 12 fortunes, its
    # world table), where no private cluster is at hand.
    "fortunes": Test("/fortunes", store="pg"),
    "queries": Test("/queries?queries=20", store="pg"),
    "users-pg": Test("/api/v1/users/1", script="random_user.lua", store="pg"),
    "users-sqlite": Test("/api/v1/users/1", script="random_user.lua", store="sqlite"),
    "summary-pg": Test("/api/v1/users/1/summary", script="random_user.lua", store="pg", script_args=["/summary"]),
    # A few keep-alive connections, as an ingress or a sidecar holds them (CONN_BALANCE).
    "few-users-2": Test("/api/v1/users/1", conns=2, script="random_user.lua", store="pg"),
    "few-users-4": Test("/api/v1/users/1", conns=4, script="random_user.lua", store="pg"),
    "few-users-8": Test("/api/v1/users/1", conns=8, script="random_user.lua", store="pg"),
    "few-pipelined-2": Test("/json", conns=2, depth=16),
    # Accept-heavy: what handing a connection over costs.
    "close-256": Test("/plaintext", close=True),
    # TechEmpower's database tests, against the private cluster (perf/tfb.py).
    "tfb-db": Test("/db", store="tfb"),
    "tfb-queries": Test("/queries?queries=20", store="tfb"),
    "tfb-fortunes": Test("/fortunes", store="tfb"),
    "tfb-updates": Test("/updates?queries=20", store="tfb"),
    "tfb-db-512": Test("/db", conns=512, store="tfb"),
    # TLS (issue 25): keep-alive records, then handshakes (one request per connection) with
    # session resumption refused by every server, then offered. percore, nginx (TLS 1.3
    # only, OpenSSL) and Go's crypto/tls, one certificate.
    "json-tls": Test("/json", tls=True),
    "handshakes-tls": Test("/json", tls=True, close=True, resume=False),
    "handshakes-tls-resumed": Test("/json", tls=True, close=True, resume=True),
}
TLS_TESTS = {name for name, t in TESTS.items() if t.tls}
TFB_TESTS = {name for name, t in TESTS.items() if t.store == "tfb"}
# The tests the targets are stated for, in the order they are reported.
DEFAULT_TESTS = "plaintext,json,pipelined,json-5000,db,users-pg"
ALL_SERVERS = "percore,go,nginx,may-minihttp,actix-web"


def log(msg):
    print(msg, file=sys.stderr, flush=True)



class Server:
    """How to build and start one server under test. `env(port, test)` gives its environment."""

    def __init__(self, name, build, command, env, routes=None, port=None, paths=None):
        self.name, self.build_fn, self.command, self.env = name, build, command, env
        self.routes = routes
        # A server that listens where its source says (TechEmpower's entries: 8080), and
        # its own spelling of a test's URL.
        self.port, self.paths = port, paths or {}
        self.binary = None
        self.error = None
        self.extra = {}

    def build(self):
        try:
            self.binary = self.build_fn()
        except Exception as e:  # an anchor that does not build is skipped, not fatal
            self.error = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            log(f"!! {self.name}: build failed, skipped: {self.error}")

    def serves(self, test):
        return self.routes is None or test in self.routes


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build_percore():
    run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    return str(ROOT / "target" / "release" / "percore")


def build_percore_without_metrics():
    """The baseline for the instrumentation's cost: metrics recording compiled out."""
    target = ROOT / "target" / "nometrics"
    run(["cargo", "build", "--release", "--quiet", "--no-default-features", "--target-dir", str(target)], cwd=ROOT)
    return str(target / "release" / "percore")


def build_percore_baseline():
    """percore as committed at PERCORE_BASELINE (default HEAD), to A/B a change in the
    working tree against it: built in a detached worktree under the scratch directory."""
    rev = run(["git", "rev-parse", os.environ.get("PERCORE_BASELINE", "HEAD")], cwd=ROOT).stdout.strip()
    tree = SCRATCH / "baseline"
    if not (tree / ".git").exists():
        run(["git", "worktree", "prune"], cwd=ROOT)
        run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT)
    run(["git", "checkout", "--quiet", "--detach", rev], cwd=tree)
    run(["cargo", "build", "--release", "--quiet", "--target-dir", str(SCRATCH / "baseline-target")], cwd=tree)
    return str(SCRATCH / "baseline-target" / "release" / "percore")




# The floor of a monoio server: what percore would cost with none of its contract (no Host
# or framing checks, no deadlines, no request ids, no metrics, no store). One SO_REUSEPORT
# listener per core, the ring flags percore uses, httparse, the Date cached per second, one
# write per read batch, mimalloc -- the "minimal monoio server" of ../shared/ANCHORS.md.


def build_rust_anchor(name):
    """A hello-world server from perf/anchors/NAME (its Cargo.toml and src/main.rs), built
    from crates.io in the scratch directory, never in the repository."""
    crate = SCRATCH / "anchors" / name
    shutil.copytree(PERF / "anchors" / name, crate, dirs_exist_ok=True)
    log(f"-- building {name} (first time: a few minutes)")
    run(["cargo", "build", "--release", "--quiet"], cwd=crate)
    package = re.search(r'^name = "(.+)"', (crate / "Cargo.toml").read_text(), re.M).group(1)
    return str(crate / "target" / "release" / package)


def build_may():
    return build_rust_anchor("may-minihttp")


def build_monoio():
    return build_rust_anchor("monoio-minimal")


def build_actix():
    return build_rust_anchor("actix-web")


def build_xitca():
    return build_rust_anchor("xitca-web")


def anchor_env(port, test):
    """ADDR, and DATABASE_URL for a test that reads a store (the Rust anchors' database
    routes: one connection per worker, plain, as percore connects here)."""
    env = {"ADDR": f"127.0.0.1:{port}"}
    if test.store == "pg":
        env["DATABASE_URL"] = PG_BENCH
    elif test.store == "tfb":
        env["DATABASE_URL"] = tfb.URL
    return env


def build_nginx():
    if not shutil.which("nginx"):
        raise RuntimeError("nginx not installed (apt install nginx)")
    return shutil.which("nginx")


def nginx_command(binary, port, test):
    prefix = SCRATCH / f"nginx-{port}"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    listen, tls = f"127.0.0.1:{port} reuseport backlog=4096", ""
    if test.tls:
        cert, key = tls_files()
        listen += " ssl"
        resume = "ssl_session_tickets on;\n        ssl_session_cache shared:SSL:10m;" if test.resume else "ssl_session_tickets off;\n        ssl_session_cache off;"
        tls = f"""ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        {resume}"""
    conf.write_text(f"""worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 10240; }}
http {{
    access_log off;
    server_tokens off;
    server {{
        listen {listen};
        {tls}
        location /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
        location /json {{ default_type application/json; return 200 '{{"message":"Hello, World!"}}'; }}
    }}
}}
""")
    return [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]


def tls_files():
    """One ECDSA P-256 certificate for 127.0.0.1 from a CA of the run's own (openssl CLI),
    shared by every server of a TLS test; made once per scratch directory."""
    cert, key = SCRATCH / "tls" / "server.pem", SCRATCH / "tls" / "server.key"
    if cert.exists() and key.exists():
        return cert, key
    d = cert.parent
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-subj", "/CN=bench CA", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE"])
    run(["openssl", "req", *ec, "-keyout", str(key), "-out", str(d / "server.csr"), "-subj", "/CN=localhost"])
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"), "-set_serial", "1", "-days", "30", "-extfile", str(d / "ext"), "-out", str(cert)])
    return cert, key


def build_go():
    if not shutil.which("go"):
        raise RuntimeError("go not installed (apt install golang-go golang-github-lib-pq-dev)")
    out = SCRATCH / "go-nethttp"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOCACHE=str(SCRATCH / "gocache"))
    run(["go", "build", "-o", str(out), "."], cwd=PERF / "anchors" / "go-nethttp", env=env)
    return str(out)


def percore_env(port, test, extra=None):
    env = {"SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(port), "BENCH_ROUTES": "1", "DEBUG_ADDR": "", "RUST_LOG": "warn"}
    if test.store == "pg":
        env["DATABASE_URL"] = PG_BENCH
    elif test.store == "tfb":
        env["DATABASE_URL"] = tfb.URL
    else:
        env["SQLITE_PATH"] = str(SQLITE_BENCH)
    # Plain to Postgres, as every anchor connects; `percore[DB_SSLMODE=require]` measures TLS.
    # (The URL's default, libpq's prefer, would take TLS wherever the server offers it.)
    env["DB_SSLMODE"] = "disable"
    if test.tls:
        cert, key = tls_files()
        env.update(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key), TLS_RESUMPTION="on" if test.resume else "off")
    env.update(extra or {})
    return env


def go_env(port, test):
    env = {"ADDR": f"127.0.0.1:{port}"}
    if test.store == "pg":
        env["DATABASE_URL"] = PG_BENCH + "?sslmode=disable"
    if test.tls:
        cert, key = tls_files()
        env.update(TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key), TLS_TICKETS="on" if test.resume else "off")
    return env


def servers():
    return {
        "percore": Server("percore", build_percore, lambda binary, port, test: [binary], percore_env),
        # The same binary on the epoll driver, to show what io_uring buys.
        "percore-epoll": Server("percore-epoll", build_percore, lambda binary, port, test: [binary], lambda port, test: percore_env(port, test, {"IO_DRIVER": "epoll"})),
        # Metrics compiled out: what the instrumentation costs.
        "percore-nometrics": Server("percore-nometrics", build_percore_without_metrics, lambda binary, port, test: [binary], percore_env),
        # The committed percore (PERCORE_BASELINE, default HEAD): A/B a working-tree change.
        "percore-baseline": Server("percore-baseline", build_percore_baseline, lambda binary, port, test: [binary], percore_env),
        "go": Server("go", build_go, lambda binary, port, test: [binary], go_env, routes={"plaintext", "json", "pipelined", "json-5000", "db", "users-pg", "few-users-2", "few-users-4", "few-users-8", "few-pipelined-2", "close-256"} | TLS_TESTS),
        "nginx": Server("nginx", build_nginx, nginx_command, lambda port, test: {}, routes={"plaintext", "pipelined"} | TLS_TESTS),
        "may-minihttp": Server("may-minihttp", build_may, lambda binary, port, test: [binary], anchor_env, routes={"plaintext", "json", "pipelined", "json-5000"}),
        # Not in the default set: the floor a monoio server reaches with no contract at all.
        "monoio-minimal": Server("monoio-minimal", build_monoio, lambda binary, port, test: [binary], anchor_env, routes={"plaintext", "json", "pipelined", "json-5000"}),
        "actix-web": Server("actix-web", build_actix, lambda binary, port, test: [binary], anchor_env, routes={"plaintext", "json", "pipelined", "json-5000", "db", "db-2000", "queries", "users-pg", "tfb-db", "tfb-queries"}),
        # Not TechEmpower's build (its repository cannot be fetched here): perf/anchors/xitca-web,
        # xitca-web and xitca-postgres from crates.io, written the way that entry is built.
        "xitca-web": Server("xitca-web", build_xitca, lambda binary, port, test: [binary], anchor_env, routes={"plaintext", "json", "pipelined", "json-5000", "db", "db-2000", "queries", "fortunes", "users-pg", "tfb-db", "tfb-queries", "tfb-fortunes"}),
        # TechEmpower's Rust leaders on its database tests, built from its repository.
        **{name: tfb_server(name) for name in tfb.ENTRIES},
    }


def tfb_server(name):
    return Server(name, lambda: tfb.build(name, SCRATCH, log), lambda binary, port, test: [binary], lambda port, test: {}, routes=TFB_TESTS, port=tfb.ENTRY_PORT, paths=tfb.PATHS)


def server_named(known, spec):
    """`percore` or `percore[DB_POOL_SIZE=2,IO_DRIVER=epoll]`."""
    m = re.fullmatch(r"([\w-]+)(?:\[(.*)\])?", spec)
    if not m or m.group(1) not in known:
        sys.exit(f"unknown server {spec!r}; known: {', '.join(known)}")
    base = known[m.group(1)]
    if not m.group(2):
        return base
    extra = dict(kv.split("=", 1) for kv in m.group(2).split(","))
    variant = Server(spec, base.build_fn, base.command, lambda port, test: {**base.env(port, test), **extra}, base.routes, base.port, base.paths)
    return variant


# The databases of this run, by store: how to reach them and whose CPU they use.
DATABASES = {}


def prepare_stores(tests, percore_binary):
    """Recreates and seeds the databases the chosen tests read."""
    stores = {TESTS[t].store for t in tests} - {None}
    if "tfb" in stores:
        db = tfb.Database(SCRATCH, log)
        db.start()
        migrate(percore_binary, {"DATABASE_URL": tfb.URL})
        DATABASES["tfb"] = (tfb.ADMIN_URL, db.postmaster_pid())
    if "pg" in stores:
        log(f"-- seeding {PG_BENCH} with {USERS} users")
        run(["psql", PG_ADMIN, "-qc", "DROP DATABASE IF EXISTS percore_bench WITH (FORCE)"])
        run(["psql", PG_ADMIN, "-qc", "CREATE DATABASE percore_bench"])
        migrate(percore_binary, {"DATABASE_URL": PG_BENCH})
        run(["psql", PG_BENCH, "-qc", f"INSERT INTO users (name, email) SELECT 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, {USERS}) g", "-qc", "VACUUM ANALYZE users"])
        data = run(["psql", PG_BENCH, "-Atc", "SHOW data_directory"]).stdout.strip()
        try:
            DATABASES["pg"] = (PG_BENCH, int(Path(data, "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError):
            log(f"-- cannot read {data}/postmaster.pid: no Postgres CPU for the pg tests")
    if "sqlite" in stores:
        import sqlite3

        log(f"-- seeding {SQLITE_BENCH} with {USERS} users")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_BENCH}{suffix}").unlink(missing_ok=True)
        migrate(percore_binary, {"SQLITE_PATH": str(SQLITE_BENCH)})
        with sqlite3.connect(SQLITE_BENCH) as db:
            db.executemany("INSERT INTO users (name, email) VALUES (?, ?)", ((f"User {i}", f"user{i}@example.com") for i in range(1, USERS + 1)))


def migrate(binary, store_env):
    """Runs percore once against a store so its migrations create the schema."""
    port = free_port()
    env = dict(os.environ, SERVER_HOST="127.0.0.1", SERVER_PORT=str(port), DEBUG_ADDR="", BENCH_ROUTES="1", **store_env)
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"percore did not become ready on {store_env}")
    finally:
        proc.terminate()
        proc.wait()



def process_tree(pid):
    """`pid` and its children (nginx serves from worker processes)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def cpu_seconds(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def parse_wrk(out):
    def num(pattern, default=0.0):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default

    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "requests": num(r"(\d+) requests in"),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": errors,
        "non2xx": int(num(r"Non-2xx or 3xx responses: (\d+)")),
    }


def wrk_command(url, test, duration, layout):
    cmd = ["wrk", "-t2", f"-c{test.conns}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if test.close:
        cmd += ["-H", "Connection: close"]
    if test.depth > 1:
        cmd += ["-s", str(PERF / "pipeline.lua"), url, "--", str(test.depth)]
    elif test.script:
        cmd += ["-s", str(PERF / test.script), url] + (["--"] + test.script_args if test.script_args else [])
    else:
        cmd.append(url)
    if layout == "pinned":
        cmd = ["taskset", "-c", "1"] + cmd
    return cmd


def statements_so_far(url):
    """Statements Postgres has run (pg_stat_statements), or None where it is not loaded."""
    try:
        out = run(["psql", url, "-Atc", "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"]).stdout
        return int(out.strip())
    except (subprocess.CalledProcessError, ValueError):
        return None


def measure(server, name, args):
    test = TESTS[name]
    port = server.port or free_port()
    database = DATABASES.get(test.store)
    cmd = server.command(server.binary, port, test)
    if args.layout == "pinned":
        cmd = ["taskset", "-c", "0"] + cmd
    env = dict(os.environ)
    env.update(server.env(port, test))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
    try:
        if not wait_for_port(port):
            raise RuntimeError(f"{server.name} did not start")
        scheme = "https" if test.tls else "http"
        url = f"{scheme}://127.0.0.1:{port}{server.paths.get(test.path, test.path)}"
        if args.warmup > 0:
            subprocess.run(wrk_command(url, test, args.warmup, args.layout), capture_output=True, preexec_fn=raise_fd_limit)
        served_before = worker_requests(port, test.tls) if server.name.startswith("percore") else []
        statements_before = statements_so_far(database[0]) if database else None
        db_before = cpu_seconds(database[1]) if database else 0.0
        before, client_before = cpu_seconds(proc.pid), children_cpu_seconds()
        out = subprocess.run(wrk_command(url, test, args.duration, args.layout), capture_output=True, text=True, preexec_fn=raise_fd_limit).stdout
        used, client_used = cpu_seconds(proc.pid) - before, children_cpu_seconds() - client_before
        db_used = cpu_seconds(database[1]) - db_before if database else None
        statements_after = statements_so_far(database[0]) if statements_before is not None else None
        served = [a - b for a, b in zip(worker_requests(port, test.tls), served_before)] if served_before else []
        result = parse_wrk(out)
        per_100k = 100_000 / result["requests"] if result["requests"] else float("nan")
        result["cpu_per_100k"] = used * per_100k
        result["wrk_cpu_per_100k"] = client_used * per_100k
        result["db_cpu_per_100k"] = db_used * per_100k if db_used is not None else float("nan")
        # Less the one statement that read the count before the run.
        result["statements"] = (statements_after - statements_before - 1) / result["requests"] if statements_after is not None and result["requests"] else float("nan")
        result["rss"] = peak_rss_mb(proc.pid)
        # The busiest worker's share of the run's requests (percore's /metrics).
        result["busiest"] = max(served) / sum(served) if served and sum(served) else None
        return result
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def worker_requests(port, tls=False):
    """percore_worker_requests_total by worker, from the server's /metrics."""
    import contextlib
    import ssl

    try:
        with contextlib.ExitStack() as stack:
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            if tls:
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                s = stack.enter_context(context.wrap_socket(s))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            text = b""
            while chunk := s.recv(65536):
                text += chunk
    except OSError:
        return []
    found = re.findall(rb'^percore_worker_requests_total\{worker="(\d+)"\} (\d+)$', text, re.M)
    return [int(n) for _, n in sorted(found, key=lambda f: int(f[0]))]


def children_cpu_seconds():
    """CPU time of the waited-for children so far: the wrk runs (the server is reaped only
    after its measurement)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=ALL_SERVERS)
    p.add_argument("--tests", default=DEFAULT_TESTS)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layout", choices=["shared", "pinned"], default="shared")
    p.add_argument("--out", default=str(PERF / "results"))
    args = p.parse_args()

    SCRATCH.mkdir(parents=True, exist_ok=True)
    known = servers()
    chosen = [server_named(known, n) for n in re.split(r",(?![^\[]*\])", args.servers)]
    tests = args.tests.split(",")
    for t in tests:
        if t not in TESTS:
            sys.exit(f"unknown test {t!r}; known: {', '.join(TESTS)}")
    for s in chosen:
        s.build()
    active = [s for s in chosen if s.binary]
    prepare_stores(tests, build_percore())

    results = {}  # (server, test) → list of runs
    for test in tests:
        for i in range(args.runs):
            for s in active:  # interleaved: A B A B …
                if not s.serves(test):
                    continue
                log(f"-- {test} run {i + 1}/{args.runs}: {s.name}")
                try:
                    r = measure(s, test, args)
                except Exception as e:
                    log(f"!! {s.name} {test}: {e}")
                    continue
                log(f"   {r['rps']:.0f} rps, p99 {r['p99']:.2f} ms, {r['cpu_per_100k']:.3f} CPU s/100k (wrk {r['wrk_cpu_per_100k']:.3f}), errors {r['errors']}, non-2xx {r['non2xx']}")
                results.setdefault((s.name, test), []).append(r)

    report = render(results, tests, active, chosen, args)
    print(report)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    path = out_dir / f"{stamp}-{args.layout}.md"
    path.write_text(report)
    log(f"written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def render(results, tests, active, chosen, args):
    lines = [
        f"# percore benchmark, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- machine: `{subprocess.run(['uname', '-a'], capture_output=True, text=True).stdout.strip()}`, nproc {os.cpu_count()}",
        f"- layout: {args.layout}; wrk -t2, {args.duration} s runs after {args.warmup} s warm-up, median of {args.runs} interleaved runs, fresh process per run",
        f"- command: `python3 perf/bench.py --servers {args.servers} --tests {args.tests} --runs {args.runs} --duration {args.duration} --layout {args.layout}`",
        "",
        f"| test | server | req/s | vs {active[0].name if active else 'percore'} | p50 ms | p99 ms | errors | non-2xx | peak RSS MB | CPU s / 100k req | CPU vs first | wrk CPU s / 100k req | busiest worker |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for test in tests:
        base = results.get((active[0].name, test)) if active else None
        base_rps = median([r["rps"] for r in base]) if base else float("nan")
        base_cpu = median([r["cpu_per_100k"] for r in base]) if base else float("nan")
        for s in active:
            runs = results.get((s.name, test))
            if not runs:
                continue
            rps = median([r["rps"] for r in runs])
            cpu = median([r["cpu_per_100k"] for r in runs])
            lines.append(
                f"| {test} | {s.name} | {rps:,.0f} | {ratio(rps, base_rps)} | {median([r['p50'] for r in runs]):.2f} | "
                f"{median([r['p99'] for r in runs]):.2f} | {sum(r['errors'] for r in runs)} | {sum(r['non2xx'] for r in runs)} | "
                f"{max(r['rss'] for r in runs):.1f} | {cpu:.3f} | {ratio(cpu, base_cpu)} | "
                f"{median([r['wrk_cpu_per_100k'] for r in runs]):.3f} | {busiest(runs)} |"
            )
    lines += database_costs(results, tests, active)
    lines += paired_ratios(results, tests, active)
    skipped = [f"{s.name} ({s.error})" for s in chosen if not s.binary]
    if skipped:
        lines += ["", "Skipped (did not build): " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"


def database_costs(results, tests, active):
    """The database tests' CPU per request, the server's and Postgres's (every process of
    the cluster), and the statements Postgres ran per request: medians of the runs."""
    db_tests = [t for t in tests if TESTS[t].store in DATABASES]
    if not db_tests:
        return []
    lines = [
        "",
        "CPU per request on the database tests, server and Postgres (µs), and statements Postgres ran per request:",
        "",
        f"| test | server | server µs/req | Postgres µs/req | total µs/req | total vs {active[0].name} | statements/req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for test in db_tests:
        base = results.get((active[0].name, test))
        base_total = median([(r["cpu_per_100k"] + r["db_cpu_per_100k"]) * 10 for r in base]) if base else float("nan")
        for s in active:
            runs = results.get((s.name, test))
            if not runs:
                continue
            server = median([r["cpu_per_100k"] * 10 for r in runs])
            db = median([r["db_cpu_per_100k"] * 10 for r in runs])
            total = median([(r["cpu_per_100k"] + r["db_cpu_per_100k"]) * 10 for r in runs])
            statements = median([r["statements"] for r in runs])
            said = f"{statements:.2f}" if statements == statements else "—"
            lines.append(f"| {test} | {s.name} | {server:.1f} | {db:.1f} | {total:.1f} | {ratio(total, base_total)} | {said} |")
    return lines


def busiest(runs):
    """The busiest worker's share of requests: median and the worst run (percore only)."""
    shares = [r["busiest"] for r in runs if r.get("busiest") is not None]
    if not shares:
        return "—"
    return f"{median(shares):.0%} (worst {max(shares):.0%})"


def paired_ratios(results, tests, active):
    """Run i of each server against run i of the first, which ran right next to it: on a
    host whose speed drifts during the run, these ratios move less than the medians do."""
    if len(active) < 2:
        return []
    lines = [
        "",
        f"Paired runs, each server's run i against {active[0].name}'s run i (median ratio, lowest–highest):",
        "",
        f"| test | server | req/s vs {active[0].name} | CPU per request vs {active[0].name} |",
        "| --- | --- | ---: | ---: |",
    ]
    for test in tests:
        base = results.get((active[0].name, test))
        for s in active[1:]:
            runs = results.get((s.name, test))
            if not base or not runs:
                continue
            pairs = list(zip(base, runs))
            rps = [r["rps"] / b["rps"] for b, r in pairs if b["rps"]]
            cpu = [r["cpu_per_100k"] / b["cpu_per_100k"] for b, r in pairs if b["cpu_per_100k"]]
            lines.append(f"| {test} | {s.name} | {spread(rps)} | {spread(cpu)} |")
    return lines


def spread(ratios):
    if not ratios:
        return "—"
    return f"{median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"


def ratio(value, base):
    if base != base or value != value or base == 0:
        return "—"
    return f"{value / base:.2f}x"


if __name__ == "__main__":
    main()
