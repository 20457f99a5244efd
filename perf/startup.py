#!/usr/bin/env python3
"""Start-up time to the first 200 OK: spawns percore, polls GET PATH until it answers 200,
and reports the median (and spread) over N starts, each a fresh process on a fresh port.

    python3 perf/startup.py                    # 20 starts, /health, SQLite, default driver
    python3 perf/startup.py --runs 20 --path /readyz --env IO_DRIVER=epoll
    python3 perf/startup.py --binary ./go-anchor --env ADDR=127.0.0.1:{port}

The clock starts just before fork/exec and stops when the response's status line arrives.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import answers_200, free_port, percore_env

ROOT = Path(__file__).resolve().parent.parent



def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--path", default="/health")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "percore"))
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE; {port} is replaced")
    args = p.parse_args()
    if args.binary.endswith("release/percore"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.runs):
            port = free_port()
            env = percore_env(port, SQLITE_PATH=f"{scratch}/s{i}.db")
            for kv in args.env:
                k, v = kv.split("=", 1)
                env[k] = v.replace("{port}", str(port))
            began = time.perf_counter()
            proc = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ok = answers_200(port, args.path, began + 10, pause=0.0002)
            took = (time.perf_counter() - began) * 1000
            proc.kill()
            proc.wait()
            if not ok:
                sys.exit(f"no 200 from {args.path} within 10 s")
            times.append(took)
    times.sort()
    print(f"start-up to first 200 OK on {args.path}, {args.runs} starts: median {statistics.median(times):.1f} ms, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
