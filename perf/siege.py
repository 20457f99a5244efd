#!/usr/bin/env python3
"""percore under siege, measured: what slowloris costs a normal client, and what Debian's
slowhttptest (an independent implementation) sees.

    python3 perf/siege.py                     # 1,000 slowloris connections, then slowhttptest -H and -B
    python3 perf/siege.py --slow 2000 --env IO_DRIVER=epoll

1. A normal client (wrk -t1 -c8, /health, 5 s) alone: its p50/p99.
2. The same client while N connections trickle a request one byte per second per connection
   (slowloris): its p50/p99 again, the ratio, and how many trickling connections the server
   closed with 408 by SERVER_READ_TIMEOUT (5 s) plus a second.
3. slowhttptest -H (slow headers) and -B (slow body), 1,000 connections, 20 s: whether the
   service stayed available and how many of its connections the server closed.
"""

import argparse
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness import answers_200, free_port, percore_env

ROOT = Path(__file__).resolve().parent.parent



def latency(url, seconds=5):
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", url], capture_output=True, text=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = re.search(r"Requests/sec:\s+(\S+)", out)

    def ms(v):
        n = float(re.match(r"[\d.]+", v).group())
        return n / 1000 if v.endswith("us") else n * 1000 if v.endswith("s") and not v.endswith("ms") else n

    errors = re.search(r"Socket errors: (.*)", out)
    return ms(pct["50"]), ms(pct["99"]), float(rps.group(1)), (errors.group(1) if errors else "none")


def slowloris(port, n, stop, result):
    request = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 64 + b"\r\n\r\n"
    # [socket, bytes sent, time of the first byte, seconds from it to the close, saw 408]
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append([s, 0, None, None, False])
    last_send = 0.0
    while not stop.is_set() and any(c[3] is None for c in socks):
        # One byte a second per connection; the closes are looked for ten times as often.
        sending = time.monotonic() - last_send >= 1.0
        if sending:
            last_send = time.monotonic()
        for c in socks:
            if c[3] is not None:
                continue
            if sending:
                try:
                    c[0].send(request[min(c[1], len(request) - 1):][:1])
                    c[1] += 1
                    c[2] = c[2] or time.monotonic()
                except OSError:
                    pass
            try:
                data = c[0].recv(512)
                c[4] |= data.startswith(b"HTTP/1.1 408")
                if not data or c[4]:
                    c[3] = time.monotonic() - c[2]
            except BlockingIOError:
                pass
            except OSError:
                c[3] = time.monotonic() - c[2]
        stop.wait(0.1)
    result.extend((c[3], c[4]) for c in socks)
    for c in socks:
        c[0].close()


def slowhttptest(mode, url, seconds=20):
    args = ["slowhttptest", mode, "-c", "1000", "-i", "1", "-r", "500", "-l", str(seconds), "-u", url, "-x", "16", "-p", "3"]
    if mode == "-B":
        args += ["-s", "8192", "-t", "POST"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    # slowhttptest stops early when the server has closed every connection ("No open
    # connections left"); its last status block is printed before those closes, so the exit
    # line and the second it came are what say how the server dealt with them.
    ended = re.search(r"Test ended on (\d+)\w* second", out)
    exit_status = re.search(r"Exit status: (.*)", out)
    unavailable = out.count("service available:   NO")
    summary = f"ended on second {ended.group(1) if ended else '?'} of {seconds}: {exit_status.group(1).strip() if exit_status else '?'}"
    return summary, unavailable


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slow", type=int, default=1000, help="slowloris connections")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = percore_env(port, SQLITE_PATH=f"{scratch}/s.db", **dict(kv.split("=", 1) for kv in args.env))
        server = subprocess.Popen([str(ROOT / "target" / "release" / "percore")], env=env)
        try:
            answers_200(port, "/readyz", time.perf_counter() + 5)
            url = f"http://127.0.0.1:{port}/health"
            p50, p99, rps, errors = latency(url)
            print(f"normal client alone: p50 {p50:.3f} ms, p99 {p99:.3f} ms, {rps:,.0f} req/s, socket errors: {errors}")
            stop, closed = threading.Event(), []
            attacker = threading.Thread(target=slowloris, args=(port, args.slow, stop, closed))
            attacker.start()
            time.sleep(1.5)
            p50s, p99s, rpss, errors = latency(url)
            attacker.join(timeout=30)
            stop.set()
            attacker.join()
            timely = sum(1 for t, _ in closed if t is not None and t <= 6.0)
            with_408 = sum(1 for _, saw in closed if saw)
            times = [t for t, _ in closed if t is not None]
            print(f"with {args.slow} slowloris connections: p50 {p50s:.3f} ms, p99 {p99s:.3f} ms ({p99s / p99:.2f}x unloaded), "
                  f"{rpss:,.0f} req/s, socket errors: {errors}")
            print(f"slowloris connections closed within SERVER_READ_TIMEOUT + 1 s of their first byte: {timely}/{args.slow}, "
                  f"{with_408} of them answered 408" + (f" (first {min(times):.2f} s, last {max(times):.2f} s)" if times else ""))
            print(f"p99 within 2x of unloaded: {'yes' if p99s <= 2 * p99 else 'NO'}")
            for mode, name in [("-H", "slow headers"), ("-B", "slow body")]:
                summary, unavailable = slowhttptest(mode, url)
                print(f"slowhttptest {mode} ({name}, 1000 connections at 500/s, 20 s): {summary}; "
                      f"probes that found the service unavailable: {unavailable}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
