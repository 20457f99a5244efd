#!/usr/bin/env python3
"""Memory of percore, measured: per worker (idle RSS with 1, 2, 4 workers, half a second
after it is ready) and per open keep-alive connection (RSS after N connections each served
one request, minus RSS after warming the request path, divided by N). Kernel socket
buffers are not in the process's RSS, so this is percore's own cost per connection.

    python3 perf/memory.py                         # 1,000 and 10,000 connections
    python3 perf/memory.py --connections 5000 --env IO_DRIVER=epoll
"""

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import answers_200, free_port, percore_env

ROOT = Path(__file__).resolve().parent.parent



def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def warm(port, requests=200):
    """Runs the request path, so its code pages are mapped before the 'before' figure."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(requests):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)


def start(binary, env_extra, scratch):
    port = free_port()
    env = percore_env(port, SQLITE_PATH=f"{scratch}/m{port}.db", MAX_CONNECTIONS=100000, **env_extra)
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers_200(port, "/readyz", time.perf_counter() + 5)
    time.sleep(0.5)
    return proc, port


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, action="append")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "percore"))
    p.add_argument("--env", action="append", default=[])
    args = p.parse_args()
    counts = args.connections or [1000, 10000]
    extra = dict(kv.split("=", 1) for kv in args.env)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as scratch:
        idle = {}
        for workers in (1, 2, 4):
            proc, _ = start(args.binary, {**extra, "WORKERS": str(workers)}, scratch)
            idle[workers] = rss_kib(proc.pid)
            anon, file = rss_kib(proc.pid, "RssAnon"), rss_kib(proc.pid, "RssFile")
            print(f"{workers} worker{'s' if workers > 1 else ''}: idle RSS {idle[workers] / 1024:.1f} MiB "
                  f"(anonymous {anon / 1024:.1f}, file pages {file / 1024:.1f})")
            proc.kill()
            proc.wait()
        print(f"per worker: {(idle[4] - idle[1]) / 3 / 1024:.2f} MiB")
        for n in counts:
            if n + 64 > hard:
                print(f"{n} connections: skipped, the fd limit is {hard}")
                continue
            proc, port = start(args.binary, extra, scratch)
            warm(port)
            before = rss_kib(proc.pid)
            socks = []
            request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(request)
                socks.append(s)
            for s in socks:
                s.recv(4096)
            # Idle connections give their read buffers back after a second (then park).
            time.sleep(2.5)
            during = rss_kib(proc.pid)
            per = (during - before) * 1024 / n
            print(f"{n} idle keep-alive connections: RSS {before / 1024:.1f} → {during / 1024:.1f} MiB, {per:.0f} bytes per connection")
            for s in socks:
                s.close()
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
