"""Egress allowlists (`network: { egress: [...] }`), against the real Docker
engine: each egress server's container has a network of its own whose only
peer is its egress proxy, and the proxy connects it to the hosts its
allowlist names and nowhere else.

"The internet" is a network this test creates, holding two plain HTTP
servers reached by name (`internet-*`, with the aliases `a.wild.test`,
`deep.a.wild.test` and `wild.test`, and `other-*`); the proxies use it as
their uplink. Every probe runs inside a server's container (`docker exec`,
so in its network namespace and with its environment), in Python's
standard library: `http.client` through the proxy (`CONNECT` and
absolute-URI `GET`), raw sockets around it. Each refusal a probe expects
is set beside an answer that proves the thing refused is there: the same
address answers through the proxy, or from a container on the uplink.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time

import pytest

IMAGE = "mcpgw/python-servers:dev"
PYTHON = "/opt/mcp/bin/python"
PORT = 8080


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


PROBE = r'''
import http.client, json, os, socket, sys

def through(host, port, mode):
    c = http.client.HTTPConnection(os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0], 3128, timeout=10)
    try:
        if mode == "connect":
            c.set_tunnel(host, port)
            c.request("GET", "/")
        else:
            c.request("GET", f"http://{host}:{port}/")
        r = c.getresponse()
        return {"status": r.status, "body": r.read().decode(errors="replace")[:300]}
    except OSError as e:
        # http.client reports a refused CONNECT as "Tunnel connection failed: 403 ...".
        return {"status": int(str(e).split(": ")[1].split()[0]) if "Tunnel connection failed" in str(e) else None,
                "error": str(e)}

def direct(host, port):
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.close()
        return "connected"
    except OSError as e:
        return f"failed: {e}"

def resolve(name):
    try:
        return sorted({a[4][0] for a in socket.getaddrinfo(name, 80)})
    except OSError as e:
        return f"failed: {e}"

def raw(host, port, text):
    """Sends `text` on a plain TCP connection; what comes back before EOF."""
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(text.encode())
        got = b""
        while chunk := s.recv(4096):
            got += chunk
            if b"\r\n\r\n" in got:
                break
        s.close()
        return got.decode(errors="replace")
    except OSError as e:
        return f"failed: {e}"

ops = {"through": through, "direct": direct, "resolve": resolve, "raw": raw}
out = [ops[op](*args) for op, *args in json.loads(sys.argv[1])]
print(json.dumps(out))
'''


def probe(container: str, *ops) -> list:
    """Runs each `(op, *args)` inside `container`; their results in order."""
    out = docker("exec", container, PYTHON, "-c", PROBE, json.dumps(ops))
    return json.loads(out)


def ip_on(container: str, network: str) -> str:
    return docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', container)


class HostListener:
    """A TCP listener on every host address: what a server must not reach."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


def start_gateway(mcpgw_bin: str, catalog) -> subprocess.Popen:
    """`mcpgw run` over stdio, driven by raw lines; returns once its
    servers listed their tools (so every container is up)."""
    proc = subprocess.Popen(
        [mcpgw_bin, "run", "--catalog", str(catalog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(str(catalog) + ".log", "w"),
        text=True,
        env={**os.environ, "MCPGW_LOG": "info"},
    )

    def send(message):
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "egress", "version": "1"}}})
    assert "result" in json.loads(proc.stdout.readline())
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    tools = json.loads(proc.stdout.readline())
    assert tools["result"]["tools"], tools
    return proc


def owned(pid: int, *filters: str) -> list:
    """Names of the containers (any state) of the gateway with `pid`."""
    args = ["ps", "-a", "--filter", f"label=io.mcpgw.pid={pid}", "--format", "{{.Names}}"]
    for f in filters:
        args += ["--filter", f"label={f}"]
    return [n for n in docker(*args).splitlines() if n]


def networks_of(pid: int) -> list:
    return [n for n in docker("network", "ls", "--filter", f"label=io.mcpgw.pid={pid}",
                              "--format", "{{.Name}}").splitlines() if n]


def server_container(pid: int, server: str) -> str:
    names = [n for n in owned(pid, f"io.mcpgw.server={server}") if not n.endswith("-proxy")]
    assert len(names) == 1, names
    return names[0]


def proxy_container(pid: int, server: str) -> str:
    names = owned(pid, f"io.mcpgw.server={server}", "io.mcpgw.role=egress-proxy")
    assert len(names) == 1, names
    return names[0]


@pytest.fixture(scope="module")
def world(mcpgw_bin, tmp_path_factory):
    """The "internet" network and its two hosts, a listener on the host,
    and a gateway with two egress servers: `web` lists the internet host by
    name and by address, and its wildcard aliases; `web2` lists it by name
    only."""
    tag = secrets.token_hex(4)
    net = f"mcpgw-test-inet-{tag}"
    internet, other = f"internet-{tag}", f"other-{tag}"
    docker("network", "create", net)
    started = []
    try:
        for name, aliases in ((internet, ["a.wild.test", "deep.a.wild.test", "wild.test"]), (other, [])):
            alias_args = [a for alias in aliases for a in ("--network-alias", alias)]
            docker("run", "-d", "--rm", "--name", name, "--network", net, *alias_args,
                   "--entrypoint", PYTHON, IMAGE, "-m", "http.server", str(PORT))
            started.append(name)
        internet_ip = ip_on(internet, net)
        other_ip = ip_on(other, net)
        listener = HostListener()
        server = f"""    image: {IMAGE}
    pull: never
    entrypoint: ["{PYTHON}", "/opt/sdk/server.py"]
"""
        catalog = tmp_path_factory.mktemp("egress") / "catalog.yaml"
        catalog.write_text(f"""version: 1
gateway:
  audit: {{ path: audit.jsonl }}
servers:
  web:
{server}    network:
      egress: ["{internet}:{PORT}", "{internet_ip}:{PORT}", "*.a.wild.test:{PORT}"]
      uplink: {net}
  web2:
{server}    network:
      egress: ["{internet}:{PORT}"]
      uplink: {net}
""")
        proc = start_gateway(mcpgw_bin, catalog)
        try:
            yield {
                "net": net, "internet": internet, "other": other,
                "internet_ip": internet_ip, "other_ip": other_ip,
                "listener": listener, "proc": proc, "catalog": catalog,
                "web": server_container(proc.pid, "web"),
                "web2": server_container(proc.pid, "web2"),
            }
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
            listener.close()
    finally:
        for name in started:
            docker("rm", "-f", name, check=False)
        docker("network", "rm", net, check=False)


def test_the_allowlisted_host_answers_through_the_proxy(world):
    connect, get = probe(world["web"],
                         ("through", world["internet"], PORT, "connect"),
                         ("through", world["internet"], PORT, "get"))
    assert connect["status"] == 200 and "Directory listing" in connect["body"], connect
    assert get["status"] == 200 and "Directory listing" in get["body"], get


def test_another_host_on_the_same_network_is_refused_with_403(world):
    connect, get, by_ip = probe(world["web"],
                                ("through", world["other"], PORT, "connect"),
                                ("through", world["other"], PORT, "get"),
                                ("through", world["other_ip"], PORT, "connect"))
    assert connect["status"] == 403, connect
    assert get["status"] == 403 and "not in the server's egress allowlist" in get["body"], get
    assert by_ip["status"] == 403, by_ip
    # It is there: the internet host reaches it.
    assert probe(world["internet"], ("direct", world["other"], PORT)) == ["connected"]
    # Each decision is in the gateway's log, with server, host, port and verdict.
    deadline = time.monotonic() + 10
    while True:
        log = open(str(world["catalog"]) + ".log").read()
        refused = [l for l in log.splitlines() if "proxy:" in l and "verdict=\"refused\"" in l
                   and f'host=\"{world["other"]}\"' in l and "server=web " in l and f"port={PORT}" in l]
        if refused:
            break
        assert time.monotonic() < deadline, log
        time.sleep(0.2)
    # And in the audit trail.
    audit = world["catalog"].parent / "audit.jsonl"
    while True:
        records = [json.loads(l) for l in audit.read_text().splitlines()] if audit.exists() else []
        egress = [r for r in records if r["event"] == "egress" and r["host"] == world["other"]]
        if egress:
            break
        assert time.monotonic() < deadline, records
        time.sleep(0.2)
    assert egress[0]["server"] == "web" and egress[0]["port"] == PORT, egress
    assert egress[0]["verdict"] == "refused" and "allowlist" in egress[0]["reason"], egress


def test_the_proxy_serves_no_one_on_its_uplink(world):
    """The proxy is attached to the uplink too; a container there (the
    internet host) that asks it for a tunnel to an allowed host gets the
    connection closed, where the server itself gets its tunnel."""
    proxy = proxy_container(world["proc"].pid, "web")
    proxy_ip = ip_on(proxy, world["net"])
    ask = f"CONNECT {world['internet']}:{PORT} HTTP/1.1\r\nHost: {world['internet']}:{PORT}\r\n\r\n"
    [from_uplink] = probe(world["internet"], ("raw", proxy_ip, 3128, ask))
    assert "200" not in from_uplink and not from_uplink.startswith("HTTP/"), from_uplink
    [from_server] = probe(world["web"], ("raw", "egress-proxy", 3128, ask))
    assert from_server.startswith("HTTP/1.1 200"), from_server
    deadline = time.monotonic() + 10
    while "refused a client from outside the server's network" not in open(str(world["catalog"]) + ".log").read():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_the_proxy_is_confined_like_a_server(world):
    config = json.loads(docker("inspect", proxy_container(world["proc"].pid, "web")))[0]
    host = config["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), host
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert config["Config"]["User"] == "65534:65534"
    assert host["Memory"] == 64 << 20 and host["PidsLimit"] == 64 and host["NanoCpus"] > 0
    assert not any("docker.sock" in b for b in host.get("Binds") or [])
    # Its own server's network and the uplink, nothing else.
    assert set(config["NetworkSettings"]["Networks"]) == {world["net"], host["NetworkMode"]}
    internal = docker("network", "inspect", "-f", "{{.Internal}}", host["NetworkMode"])
    assert internal == "true"


def test_a_direct_connection_bypassing_the_proxy_fails(world):
    results = probe(world["web"],
                    ("direct", world["internet_ip"], PORT),
                    ("direct", world["other_ip"], PORT),
                    ("direct", world["internet"], PORT))
    assert all(r.startswith("failed") for r in results), results


def test_the_host_and_the_docker_gateways_are_unreachable(world):
    port = world["listener"].port
    gateways = {
        docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge"),
        docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", world["net"]),
    }
    host_addrs = set(subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split())
    targets = sorted(a for a in gateways | host_addrs if a and ":" not in a)
    # Reachable from a container on the uplink: the listener is there.
    reach = probe(world["internet"], *[("direct", a, port) for a in targets])
    assert "connected" in reach, dict(zip(targets, reach))
    direct = probe(world["web"], *[("direct", a, port) for a in targets])
    assert all(r.startswith("failed") for r in direct), dict(zip(targets, direct))
    through = probe(world["web"], *[("through", a, port, "connect") for a in targets])
    assert all(r["status"] == 403 for r in through), dict(zip(targets, through))
    # The names Docker Desktop gives the host resolve to nothing here.
    names = probe(world["web"], ("resolve", "host.docker.internal"), ("resolve", "gateway.docker.internal"))
    assert all(isinstance(r, str) and r.startswith("failed") for r in names), names


def test_dns_lookups_of_outside_names_fail(world):
    outside, internet, proxy = probe(world["web"],
                                     ("resolve", "example.com"),
                                     ("resolve", world["internet"]),
                                     ("resolve", "egress-proxy"))
    assert isinstance(outside, str) and outside.startswith("failed"), outside
    assert isinstance(internet, str) and internet.startswith("failed"), internet
    # What Docker's embedded DNS still answers: the proxy, on the server's own network.
    assert isinstance(proxy, list) and len(proxy) == 1, proxy
    # The proxy resolves the same outside name by itself (so it would work through it).
    assert isinstance(probe(world["internet"], ("resolve", world["internet"]))[0], list)


def test_a_wildcard_matches_subdomains_only_as_written(world):
    sub, deep, bare, elsewhere = probe(world["web"],
                                       ("through", "deep.a.wild.test", PORT, "connect"),
                                       ("through", "deep.a.wild.test", PORT, "get"),
                                       ("through", "a.wild.test", PORT, "connect"),
                                       ("through", "wild.test", PORT, "connect"))
    assert sub["status"] == 200, sub
    assert deep["status"] == 200, deep
    assert bare["status"] == 403, bare
    assert elsewhere["status"] == 403, elsewhere


def test_a_name_resolving_to_a_private_address_is_refused_unless_listed(world):
    (refused,) = probe(world["web2"], ("through", world["internet"], PORT, "get"))
    assert refused["status"] == 403, refused
    assert f"resolves to {world['internet_ip']}, a private address" in refused["body"], refused
    (allowed,) = probe(world["web"], ("through", world["internet"], PORT, "get"))
    assert allowed["status"] == 200, allowed


def test_two_egress_servers_cannot_reach_each_other(world):
    pid = world["proc"].pid
    web2_addrs = [ip for ip in docker("inspect", "-f",
                                      "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                                      world["web2"], proxy_container(pid, "web2")).split() if ip]
    assert web2_addrs
    results = probe(world["web"], *[("direct", a, 3128) for a in web2_addrs],
                    *[("through", a, 3128, "connect") for a in web2_addrs])
    direct, through = results[:len(web2_addrs)], results[len(web2_addrs):]
    assert all(r.startswith("failed") for r in direct), direct
    assert all(r["status"] == 403 for r in through), through
    # web2's proxy is there: web2 reaches it.
    assert probe(world["web2"], ("direct", "egress-proxy", 3128)) == ["connected"]


def test_a_killed_proxy_is_started_again_and_the_next_request_works(world):
    pid = world["proc"].pid
    before = proxy_container(pid, "web")
    before_id = docker("inspect", "-f", "{{.Id}}", before)
    docker("kill", before)
    deadline = time.monotonic() + 60
    while True:
        (result,) = probe(world["web"], ("through", world["internet"], PORT, "get"))
        if result.get("status") == 200:
            break
        assert time.monotonic() < deadline, f"the proxy did not come back: {result}"
        time.sleep(0.5)
    after_id = docker("inspect", "-f", "{{.Id}}", proxy_container(pid, "web"))
    assert after_id != before_id
    log = open(str(world["catalog"]) + ".log").read()
    assert "its egress proxy exited" in log, log


def test_shutdown_and_gc_leave_no_proxy_or_network_behind(mcpgw_bin, world, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"""version: 1
servers:
  solo:
    image: {IMAGE}
    pull: never
    entrypoint: ["{PYTHON}", "/opt/sdk/server.py"]
    network:
      egress: ["{world['internet']}:{PORT}"]
      uplink: {world['net']}
""")
    # Shutdown: the client goes, the gateway removes everything it made.
    proc = start_gateway(mcpgw_bin, catalog)
    assert len(owned(proc.pid)) == 2 and len(networks_of(proc.pid)) == 1
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert owned(proc.pid) == [] and networks_of(proc.pid) == []
    # A gateway killed outright leaves its proxy and network; `mcpgw gc` removes them.
    proc = start_gateway(mcpgw_bin, catalog)
    proxy = proxy_container(proc.pid, "solo")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proxy in owned(proc.pid) and len(networks_of(proc.pid)) == 1
    gc = subprocess.run([mcpgw_bin, "gc"], capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert owned(proc.pid) == [] and networks_of(proc.pid) == [], gc.stdout + gc.stderr


def test_validate_lists_each_servers_egress_among_its_relaxations(mcpgw_bin, world):
    done = subprocess.run([mcpgw_bin, "validate", "--catalog", str(world["catalog"])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = {l.split()[0]: l for l in done.stdout.splitlines()[1:]}
    assert (f"network egress through its proxy to: {world['internet']}:{PORT}, "
            f"{world['internet_ip']}:{PORT}, *.a.wild.test:{PORT}") in lines["web"], done.stdout
    assert f"network egress through its proxy to: {world['internet']}:{PORT}" in lines["web2"], done.stdout
