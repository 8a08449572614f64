#!/usr/bin/env python3
"""The latency the egress proxy adds, on loopback, and its memory.

Starts `mcpgw egress-proxy` (the binary given) on 127.0.0.1, allowing a
local HTTP server and an HTTPS one (a self-signed certificate made with
`openssl`), and times, in the same run and interleaved, N requests of
each kind: directly, through a CONNECT tunnel (what HTTPS_PROXY does:
one tunnel per request, TLS inside it for HTTPS), and as an absolute-URI
GET (HTTP_PROXY). Each request opens a new connection, as a client
without a connection pool through a proxy does. Prints p50/p90/p99 per
kind, the difference of the medians, and the proxy's resident memory
(VmRSS, and its peak VmHWM) after the run.

Usage: scripts/egress-latency.py MCPGW_BIN [N]
"""

import http.client
import http.server
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once: no Nagle delay in the numbers.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(tls: ssl.SSLContext | None) -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(kind: str, port: int, proxy: int, client_tls: ssl.SSLContext) -> float:
    start = time.perf_counter()
    if kind == "direct-http":
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", "/")
    elif kind == "connect-http":
        c = http.client.HTTPConnection("127.0.0.1", proxy)
        c.set_tunnel("127.0.0.1", port)
        c.request("GET", "/")
    elif kind == "absolute-http":
        c = http.client.HTTPConnection("127.0.0.1", proxy)
        c.request("GET", f"http://127.0.0.1:{port}/")
    elif kind == "direct-https":
        c = http.client.HTTPSConnection("127.0.0.1", port, context=client_tls)
        c.request("GET", "/")
    elif kind == "connect-https":
        c = http.client.HTTPSConnection("127.0.0.1", proxy, context=client_tls)
        c.set_tunnel("127.0.0.1", port)
        c.request("GET", "/")
    response = c.getresponse()
    assert response.status == 200, (kind, response.status, response.read())
    response.read()
    c.close()
    return (time.perf_counter() - start) * 1e6


def main() -> None:
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.create_default_context(cafile=cert)
        http_port, https_port = serve(None), serve(server_tls)
        proxy_port = free_port()
        proxy = subprocess.Popen([binary, "egress-proxy", "--server", "bench",
                                  "--listen", f"127.0.0.1:{proxy_port}",
                                  "--allow", f"127.0.0.1:{http_port}", "--allow", f"127.0.0.1:{https_port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "MCPGW_LOG": "warn"})
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", proxy_port)).close()
                    break
                except OSError:
                    time.sleep(0.05)
            kinds = {"direct-http": http_port, "connect-http": http_port, "absolute-http": http_port,
                     "direct-https": https_port, "connect-https": https_port}
            times = {k: [] for k in kinds}
            for k, port in kinds.items():  # warm-up
                for _ in range(50):
                    one(k, port, proxy_port, client_tls)
            for _ in range(n):
                for k, port in kinds.items():
                    times[k].append(one(k, port, proxy_port, client_tls))
            status = open(f"/proc/{proxy.pid}/status").read()
            mem = {l.split(":")[0]: l.split(":")[1].strip() for l in status.splitlines()
                   if l.startswith(("VmRSS", "VmHWM"))}
        finally:
            proxy.terminate()
            proxy.wait()

    def q(xs, p):
        return statistics.quantiles(xs, n=100)[p - 1]

    print(f"{n} requests of each kind, new connection each, loopback, microseconds")
    print(f"{'kind':<14} {'p50':>8} {'p90':>8} {'p99':>8}")
    for k, xs in times.items():
        print(f"{k:<14} {statistics.median(xs):>8.0f} {q(xs, 90):>8.0f} {q(xs, 99):>8.0f}")
    med = {k: statistics.median(xs) for k, xs in times.items()}
    print(f"added at p50: CONNECT+HTTP {med['connect-http'] - med['direct-http']:.0f} us, "
          f"absolute-URI HTTP {med['absolute-http'] - med['direct-http']:.0f} us, "
          f"CONNECT+HTTPS {med['connect-https'] - med['direct-https']:.0f} us")
    print(f"proxy memory after the run: VmRSS {mem.get('VmRSS')}, peak VmHWM {mem.get('VmHWM')}")


if __name__ == "__main__":
    main()
