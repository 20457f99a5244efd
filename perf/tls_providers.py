#!/usr/bin/env python3
"""rustls's crypto providers, ring and aws-lc-rs, on what percore's TLS listener does:
server-side time of a full TLS 1.3 handshake (ECDSA P-256, X25519; aws-lc-rs also with the
X25519MLKEM768 hybrid its default offers) and of sealing a small and a 16 KiB record.
Built from perf/anchors/tls-providers in the scratch directory; prints what it measured.

    python3 perf/tls_providers.py
"""

import subprocess

import bench

if __name__ == "__main__":
    binary = bench.build_rust_anchor("tls-providers")
    print(subprocess.run(["taskset", "-c", "1", binary], check=True, capture_output=True, text=True).stdout, end="")
