#!/usr/bin/env python3
"""How evenly a handful of keep-alive connections spread over percore's workers, the way an
ingress or a mesh sidecar connects: TRIALS trials per connection count, each opening k
connections, sending one request on each, and reading the workers' live connection counts
(`percore_worker_connections`) over the first. CONN_BALANCE=exact against kernel (the
SO_REUSEPORT hash alone). These figures do not depend on the host's speed.

    python3 perf/balance.py                  # 400 trials of k = 2, 4, 8, exact and kernel
    python3 perf/balance.py --trials 100 --k 2,3
"""

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time

from harness import PERCORE, ROOT, answers_200, free_port, percore_env


def request(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return body


def counts(sock):
    text = request(sock, "/metrics")
    found = re.findall(rb'^percore_worker_connections\{worker="(\d+)"\} (\d+)$', text, re.M)
    return [int(n) for _, n in sorted(found)]


def trial(port, k):
    deadline = time.monotonic() + 3
    while True:
        first = socket.create_connection(("127.0.0.1", port))
        if sum(counts(first)) == 1:
            break
        first.close()
        if time.monotonic() > deadline:
            sys.exit("connections of the last trial are still open")
        time.sleep(0.002)
    conns = [first]
    for _ in range(k - 1):
        c = socket.create_connection(("127.0.0.1", port))
        request(c, "/health")
        conns.append(c)
    result = counts(conns[0])
    for c in conns:
        c.close()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--k", default="2,4,8")
    p.add_argument("--driver", default="auto")
    args = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    ks = [int(k) for k in args.k.split(",")]
    print(f"WORKERS=2, {args.trials} trials each (python3 perf/balance.py --trials {args.trials} --k {args.k})\n")
    print("| balance | connections | all on one worker | uneven (e.g. 3:1) | even |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ["exact", "kernel"]:
            port = free_port()
            env = percore_env(port, WORKERS=2, CONN_BALANCE=mode, IO_DRIVER=args.driver, SQLITE_PATH=f"{scratch}/{mode}.db")
            server = subprocess.Popen([str(PERCORE)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                answers_200(port, "/readyz", time.perf_counter() + 5)
                for k in ks:
                    one = uneven = even = 0
                    for _ in range(args.trials):
                        c = trial(port, k)
                        if max(c) == k:
                            one += 1
                        elif max(c) - min(c) > 1:
                            uneven += 1
                        else:
                            even += 1
                    pct = lambda n: f"{n} ({n / args.trials:.0%})"  # noqa: E731
                    print(f"| {mode} | {k} | {pct(one)} | {pct(uneven) if k > 2 else '–'} | {pct(even)} |", flush=True)
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
