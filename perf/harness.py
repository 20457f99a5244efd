"""What every perf/ script needs to run a server: a free port, the environment percore is
started with for a measurement, and the wait until it answers. Imported by the scripts
(`python3 perf/X.py` puts perf/ on the import path)."""

import os
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERCORE = ROOT / "target" / "release" / "percore"


def free_port():
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percore_env(port, **settings):
    """The environment for percore on 127.0.0.1:`port`, quiet and without the profiler,
    plus `settings` (the caller's, which win)."""
    env = dict(os.environ, SERVER_HOST="127.0.0.1", SERVER_PORT=str(port), DEBUG_ADDR="", RUST_LOG="warn")
    env.update({k: str(v) for k, v in settings.items()})
    return env


def wait_for_port(port, timeout=10.0, alive=lambda: True):
    """Waits until something accepts on `port`; False after `timeout` or once `alive()` is
    false (the server exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)
    return False


def answers_200(port, path, deadline, pause=0.01):
    """Asks `path` until it answers 200 (True) or `deadline` (time.perf_counter) passes."""
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(pause)
    return False
