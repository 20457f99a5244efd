#!/usr/bin/env python3
"""Reads every response percore sends with h11, a strict HTTP/1.1 state machine that nobody
on this project wrote: every route and every refusal, on GET and HEAD, one connection each
and pipelined, HTTP/1.1 and HTTP/1.0. A response h11 rejects (a body after a response to
HEAD, a Content-Length on a 204, a 1xx to an HTTP/1.0 client, bytes after a response that
closed the connection, ...) fails the run.

    python3 tests/support/h11_client.py 127.0.0.1:PORT
    python3 tests/support/h11_client.py 127.0.0.1:PORT --tls CA.pem   # through Python's ssl

Run by tests/it/strict_clients.rs against a server started with BENCH_ROUTES=1,
SERVER_READ_TIMEOUT=1s and MAX_BODY_BYTES=1000. Prints one line per failure and a count.
"""

import json
import socket
import ssl
import sys

import h11

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
# With --tls CA.pem every connection goes through Python's ssl, verifying the server's
# certificate against CA.pem and offering ALPN http/1.1.
TLS = None
if "--tls" in sys.argv:
    TLS = ssl.create_default_context(cafile=sys.argv[sys.argv.index("--tls") + 1])
    TLS.set_alpn_protocols(["http/1.1"])
failures = []
read = 0


def connect():
    sock = socket.create_connection((HOST, PORT), timeout=10)
    if TLS is None:
        return sock
    tls = TLS.wrap_socket(sock, server_hostname=HOST)
    if tls.selected_alpn_protocol() != "http/1.1":
        failures.append(f"ALPN: {tls.selected_alpn_protocol()!r}, wanted 'http/1.1'")
    return tls


class Exchange:
    """One request: what h11 is told the client sent (method, target, headers, body) and,
    for requests h11 would refuse to write itself, the raw bytes actually sent."""

    def __init__(self, method, target, headers=(), body=b"", raw=None, http10=False, expect=None):
        self.method = method
        self.target = target
        self.headers = list(headers)
        self.body = body
        self.raw = raw
        self.http10 = http10
        self.expect = expect  # the final status wanted, when known

    def describe(self):
        if self.raw is not None:
            return repr(self.raw[:70])
        return f"{self.method} {self.target}{' HTTP/1.0' if self.http10 else ''}"


def wire(ex):
    """The bytes to send for `ex`: its raw bytes, HTTP/1.0 written by hand, or what h11
    itself writes."""
    if ex.raw is not None:
        return ex.raw
    if ex.http10:
        headers = list(ex.headers)
        if ex.body:
            headers.append(("Content-Length", str(len(ex.body))))
        lines = [f"{ex.method} {ex.target} HTTP/1.0"] + [f"{n}: {v}" for n, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + ex.body
    c = h11.Connection(h11.CLIENT)
    return b"".join(told(c, ex, send=True))


def told(conn, ex, send=False):
    """Tells `conn` that `ex` was sent; returns the bytes h11 produced for it. h11 only
    writes HTTP/1.1, so an HTTP/1.0 request is told as its 1.1 equivalent: the same
    framing, and `Connection: close` unless it asked for keep-alive."""
    headers = [("Host", "test")] + ex.headers
    if ex.body:
        headers.append(("Content-Length", str(len(ex.body))))
    if ex.http10 and not any(n.lower() == "connection" for n, _ in ex.headers):
        headers.append(("Connection", "close"))
    version = "1.1"
    if ex.raw is not None and not send:
        # h11 would refuse to write a broken request; it only needs to know the method.
        headers = [("Host", "test")]
        if ex.method == "POST":
            headers.append(("Content-Length", "0"))
    out = [conn.send(h11.Request(method=ex.method, target=ex.target, headers=headers, http_version=version))]
    if ex.body and (ex.raw is None or send):
        out.append(conn.send(h11.Data(data=ex.body)))
    out.append(conn.send(h11.EndOfMessage()))
    return [b for b in out if b]


def read_one(conn, sock, ex):
    """Reads one response to `ex` with h11; returns (status, body, closes)."""
    status, body, closes = None, b"", False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            if ex.http10:
                # RFC 9110 §15.2; h11 cannot know, as it was told a 1.1 request.
                raise h11.RemoteProtocolError(f"a {event.status_code} to an HTTP/1.0 request")
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            closes = any(n == b"connection" and b"close" in v.lower() for n, v in event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body, closes
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("closed before a whole response")


def drain_to_close(conn, sock):
    """After a response that closed the connection: nothing may follow but the close."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.ConnectionClosed):
            return
        raise h11.RemoteProtocolError(f"after the last response: {event!r}")


def run(batch, pipelined):
    """Sends `batch` on one connection (all at once when pipelined) and reads every response
    with h11, in order, until one closes the connection."""
    global read
    sock = connect()
    conn = h11.Connection(h11.CLIENT)
    if pipelined:
        sock.sendall(b"".join(wire(ex) for ex in batch))
    try:
        for ex in batch:
            if not pipelined:
                sock.sendall(wire(ex))
            told(conn, ex)
            try:
                status, body, closes = read_one(conn, sock, ex)
            except h11.RemoteProtocolError as e:
                failures.append(f"{ex.describe()} ({'pipelined' if pipelined else 'alone'}): h11: {e}")
                return
            read += 1
            if ex.expect is not None and status != ex.expect:
                failures.append(f"{ex.describe()}: status {status}, wanted {ex.expect}: {body[:120]!r}")
            if ex.method == "HEAD" and body:
                failures.append(f"{ex.describe()}: a body in a response to HEAD")
            if status >= 400 and ex.method != "HEAD":
                try:
                    error = json.loads(body)
                    assert error["status"] == "error" and error["code"] == status, error
                except Exception as e:  # noqa: BLE001 - any failure to read the error body is one
                    failures.append(f"{ex.describe()}: error body is not the contract's JSON ({e}): {body[:120]!r}")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE or closes:
                try:
                    drain_to_close(conn, sock)
                except h11.RemoteProtocolError as e:
                    failures.append(f"{ex.describe()}: h11: {e}")
                return
            conn.start_next_cycle()
    finally:
        sock.close()


def api_json(method, target, value, expect):
    body = json.dumps(value).encode()
    return Exchange(method, target, [("Content-Type", "application/json")], body, expect=expect)


def main():
    # A user to read, with an order and preferences.
    sock = connect()
    conn = h11.Connection(h11.CLIENT)
    ex = api_json("POST", "/api/v1/users", {"name": "Ada", "email": "ada-h11@example.com"}, 201)
    sock.sendall(wire(ex))
    told(conn, ex)
    status, body, _ = read_one(conn, sock, ex)
    sock.close()
    assert status == 201, (status, body)
    uid = json.loads(body)["id"]
    user = f"/api/v1/users/{uid}"

    reads = [
        ("/health", 200), ("/livez", 200), ("/readyz", 200), ("/metrics", 200),
        ("/openapi.json", 200), ("/api/v1/users", 200), ("/api/v1/users?limit=0", 400),
        (user, 200), ("/api/v1/users/999999", 404), ("/api/v1/users/abc", 400),
        (f"{user}/orders", 200), (f"{user}/preferences", 200), (f"{user}/summary", 200),
        ("/plaintext", 200), ("/json", 200), ("/db", 200), ("/queries?queries=3", 200),
        ("/fortunes", 200), ("/updates?queries=2", 200), ("/missing", 404), ("/api/v1/users/%zz", 400),
    ]
    plain = [Exchange(m, t, expect=s) for t, s in reads for m in ("GET", "HEAD")]
    writes = [
        api_json("POST", f"{user}/orders", {"item": "tea", "quantity": 2, "price_cents": 350}, 201),
        api_json("PUT", f"{user}/preferences", {"theme": "dark"}, 200),
        api_json("PATCH", user, {"name": "Ada L"}, 200),
        api_json("POST", "/api/v1/users", {"name": "Ada", "email": "ada-h11@example.com"}, 409),
        api_json("POST", "/api/v1/users", {"name": "", "email": "nope"}, 400),
        Exchange("POST", "/api/v1/users", [("Content-Type", "text/plain")], b"x", expect=415),
        Exchange("POST", "/api/v1/users", expect=411),
        Exchange("DELETE", "/health", expect=405),
        Exchange("BREW", "/health", expect=405),
    ]
    for ex in plain + writes:
        run([ex], pipelined=False)
    run(plain + writes, pipelined=True)
    for ex in [Exchange("GET", "/health", http10=True, expect=200), Exchange("HEAD", user, http10=True, expect=200)]:
        run([ex], pipelined=False)
    # HTTP/1.0 keep-alive, pipelined.
    ka = [Exchange("GET", "/health", [("Connection", "keep-alive")], http10=True, expect=200),
          Exchange("HEAD", "/json", [("Connection", "keep-alive")], http10=True, expect=200),
          Exchange("GET", "/plaintext", http10=True, expect=200)]
    run(ka, pipelined=True)
    # Expect: 100-continue, answered with 100 then the final status.
    body = json.dumps({"name": "B", "email": "b-h11@example.com"}).encode()
    run([Exchange("POST", "/api/v1/users", [("Content-Type", "application/json"), ("Expect", "100-continue")], body, expect=201)], False)
    # HTTP/1.0 with Expect: 100-continue: no 1xx (h11 rejects a 1xx to a 1.0 request).
    run([Exchange("POST", "/api/v1/users", [("Content-Type", "application/json"), ("Expect", "100-continue")],
                  json.dumps({"name": "C", "email": "c-h11@example.com"}).encode(), http10=True, expect=201)], False)
    # DELETE: 204 (no Content-Length allowed), then 404.
    run([Exchange("DELETE", user, expect=204), Exchange("DELETE", user, expect=404)], pipelined=True)

    # Refusals: each request too broken to serve, with GET and HEAD, alone and with a valid
    # request pipelined behind (which must never be answered).
    long_uri = "/" + "a" * 9000
    broken = [
        (b"{m} /health HTTP/1.1\r\n\r\n", 400),
        (b"{m} /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"{m} /health HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"{m} " + long_uri.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n", 431),
        (b"{m} /health HTTP/1.1\r\nHost: t\r\nExpect: foo\r\n\r\n", 417),
        (b"{m} /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", 404),
        # Not whole within SERVER_READ_TIMEOUT: 408.
        (b"{m} /health HTTP/1.1\r\nHost: t\r\n", 408),
    ]
    follow = Exchange("GET", "/health")
    for template, status in broken:
        for method in ("GET", "HEAD"):
            raw = template.replace(b"{m}", method.encode())
            ex = Exchange(method, "/health", raw=raw, expect=status)
            run([ex], pipelined=False)
            if status != 408:
                run([ex, follow], pipelined=True)

    for f in failures:
        print("FAIL", f)
    over = f" over {ssl.OPENSSL_VERSION}" if TLS is not None else ""
    print(f"{read} responses read by h11 {h11.__version__}{over}, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
