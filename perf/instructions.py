#!/usr/bin/env python3
"""Instructions per request on the answering path, counted by callgrind: a figure that does
not move with the host.

This machine's speed drifts by ±15% from one minute to the next, so a change worth a few
percent of one request's CPU cannot be seen in requests per second. The instructions
executed to answer a request can: they are the same run after run, to the instruction.

The server runs under `valgrind --tool=callgrind` with one worker on the epoll driver
(valgrind does not model io_uring), collecting only inside `Conn::answer_now` and what it
calls — parse, route, handler, response head, metrics, request id, once per request — and a
client sends BATCHES pipelined batches of 16 GET requests in wrk's format on one connection.
The per-batch read and write are left out: they are the same for every request in a batch
and are mostly system calls, which callgrind does not count.

    python3 perf/instructions.py                         # /plaintext and /json, this tree's build
    python3 perf/instructions.py --binary /tmp/old-percore --paths /json
    python3 perf/instructions.py --annotate              # and the costliest source lines
    python3 perf/instructions.py --paths /api/v1/users/1 # a store route (SQLite): the
                                                         # worker's side, delivery included

For a route that waits on the store (/api/…, /db, /queries, /fortunes), the count is the
whole connection task (`Conn::run`: the batch's read and write, the parse, the handler before
and after the store answers, the response) and the worker's reply delivery
(`deliver_replies`); the store's own work runs on the pool's threads and is not counted.
A user with id 1 is created first.

Needs valgrind (`apt-get install valgrind`). Builds percore in release first unless given
--binary.
"""

import argparse
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import free_port, percore_env, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DEPTH = 16



def drive(port, path, batches):
    """Sends `batches` pipelined batches of DEPTH requests and reads every response whole
    (by its Content-Length); any status but 200 stops the run, since it would count the
    instructions of an error path."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * DEPTH
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        got = b""
        for _ in range(batches):
            s.sendall(request)
            for _ in range(DEPTH):
                while b"\r\n\r\n" not in got:
                    got += receive(s, path)
                head, _, got = got.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 "):
                    sys.exit(f"{path} answered {head.splitlines()[0].decode(errors='replace')}, not 200")
                length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
                while len(got) < length:
                    got += receive(s, path)
                got = got[length:]


def seed_user(port):
    """Creates the user the store route reads (its first write is not counted: the counts
    are zeroed after it)."""
    body = b'{"name":"Ada","email":"ada@example.com"}'
    head = f"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head + body)
        if not s.recv(64).startswith(b"HTTP/1.1 201"):
            sys.exit("could not create the user the route reads")


def receive(s, path):
    chunk = s.recv(65536)
    if not chunk:
        sys.exit(f"the server closed the connection during {path}")
    return chunk


def waits(path):
    """Whether the route waits on the store (its handler's second half runs after an await)."""
    return path.startswith(("/api/", "/db", "/queries", "/fortunes"))


def count(binary, path, batches, annotate):
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = percore_env(port, IO_DRIVER="epoll", WORKERS=1, BENCH_ROUTES=1, RUST_LOG="error")
        env["SQLITE_PATH"] = str(Path(tmp) / "store.db")
        toggles = ["--toggle-collect=*Conn*::run*", "--toggle-collect=*deliver_replies*"] if waits(path) else ["--toggle-collect=*Conn*::answer_now*"]
        cmd = ["valgrind", "--tool=callgrind", *toggles, f"--callgrind-out-file={out}", binary]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for_port(port, timeout=60, alive=lambda: server.poll() is None):
                sys.exit("the server did not start under valgrind")
            if waits(path):
                seed_user(port)
                reset = subprocess.run(["callgrind_control", "--zero", str(server.pid)], capture_output=True)
                if reset.returncode != 0:
                    sys.exit(f"callgrind_control --zero failed: {reset.stderr.decode()}")
            drive(port, path, batches)
        finally:
            server.terminate()
            server.wait()
        text = out.read_text()
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
        if annotate:
            report = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                                    capture_output=True, text=True).stdout
            print("\n".join(report.splitlines()[:60]))
    return total / (batches * DEPTH)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", help="a percore binary (default: build this tree in release)")
    p.add_argument("--paths", default="/plaintext,/json")
    p.add_argument("--batches", type=int, default=1000)
    p.add_argument("--annotate", action="store_true", help="print callgrind's inclusive costs too")
    args = p.parse_args()
    binary = args.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = str(ROOT / "target" / "release" / "percore")
    for path in args.paths.split(","):
        per_request = count(binary, path, args.batches, args.annotate)
        where = "the worker (Conn::run, deliver_replies)" if waits(path) else "Conn::answer_now"
        print(f"{path}: {per_request:,.1f} instructions a request in {where} (callgrind, {args.batches} batches of {DEPTH})")


if __name__ == "__main__":
    main()
