"""Remote servers over Streamable HTTP (`url:` in the catalog), and the
SSRF guard in front of them.

The remote is `remote_server.py`, a server written with the official Python
SDK (mcp==2.3.0), served over Streamable HTTP on loopback (so the catalog
says `allow_private: true`) behind a credential it checks itself: a header
secret (from a file secret source), or a bearer JWT from the authlib
authorization server of `authserver.py`, fetched by the gateway with the
client-credentials grant (its client secret from the environment source)
and checked by the server against the issuer's JWKS with no leeway, so a
token the gateway forgot to refresh fails. Driven by the official client in
both eras, over both fronts: calls work, the secret is in no log line (at
trace level) and no client message, the client's own token never reaches
the remote, a short token lifetime proves the refresh, and a remote that
dies is reported and retried while a container server keeps serving, and
serves again when it returns. Then the guard: loopback, private,
link-local and metadata URLs refused at load, a name that resolves to
loopback refused at connect time, and a redirect not followed."""

import json
import os
import pathlib
import shlex
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from authserver import AuthServer, Client as Registered
from helpers import mcpgw
from test_http import free_port, raw

HERE = pathlib.Path(__file__).resolve().parent
MODES = ["legacy", "auto"]
KEY = "vendor-Secret-7Hq2-Kd81-value"
CLIENT_SECRET = "mcpgw-Client-Secret-9Tz4-Wn63"


class Remote:
    """remote_server.py on a loopback port, started (again) and killed."""

    def __init__(self, tmp_path, *args):
        self.port = free_port()
        self.seen = tmp_path / f"seen-{self.port}"
        self.args = args
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "remote_server.py"), "--port", str(self.port),
             "--seen", str(self.seen), *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "the remote server did not start"
            time.sleep(0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def authorizations(self) -> list[str]:
        return self.seen.read_text().splitlines() if self.seen.exists() else []


@pytest.fixture
def header_remote(tmp_path):
    value = tmp_path / "expected"
    value.write_text(f"Bearer {KEY}")
    remote = Remote(tmp_path, "--header", "Authorization", "--value-file", str(value))
    yield remote
    remote.kill()


@pytest.fixture
def secrets_dir(tmp_path):
    """A file secret source holding the header secret."""
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o700)
    (directory / "vendor.token").write_text(KEY)
    (directory / "vendor.token").chmod(0o600)
    return directory


def header_catalog(remote, extra="") -> str:
    return f"""version: 1
gateway:
  init_timeout: 30s
  restart: {{ initial_backoff: 100ms, max_backoff: 500ms, circuit_after: 1000 }}
servers:
  vendor:
    url: {remote.url}
    allow_private: true
    headers:
      Authorization: {{ secret: vendor.token, format: "Bearer {{}}" }}
{extra}"""


class Gateway:
    """mcpgw over HTTP, its log (at trace level) in a file: a pipe would
    fill and stall it."""

    def __init__(self, mcpgw_bin, tmp_path, catalog_text, *extra, env=None, wait_ready=True):
        self.port = free_port()
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(catalog_text)
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = tmp_path / "gateway.log"
        self.log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [mcpgw_bin, "run", "--catalog", str(catalog), "--transport", "http",
             "--listen", f"127.0.0.1:{self.port}", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log_file,
            env={**os.environ, "MCPGW_LOG": "trace", "NO_COLOR": "1", **(env or {})})
        deadline = time.monotonic() + 60
        while wait_ready:
            try:
                if raw(f"http://127.0.0.1:{self.port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the HTTP gateway did not become ready"
            time.sleep(0.1)

    def readiness(self) -> dict:
        return json.loads(raw(f"http://127.0.0.1:{self.port}/readyz")[2])["servers"]

    def wait_for(self, server, state):
        deadline = time.monotonic() + 60
        while self.readiness().get(server) != state:
            assert time.monotonic() < deadline, f"{server} never became {state}: {self.readiness()}"
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        assert self.proc.wait(timeout=15) == 0
        self.log_file.close()
        return self.log.read_text()


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def token_for(mcpgw_bin, tmp_path) -> tuple[str, str]:
    store = tmp_path / "tokens.json"
    made = subprocess.run([mcpgw_bin, "token", "create", "alice", "--tokens", str(store)],
                          capture_output=True, text=True, check=True)
    return made.stdout.strip(), str(store)


def http_client(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return streamable_http_client(url, http_client=httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30, read=120)))


async def exercise(client):
    """What every remote test asks of the remote through the gateway."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"vendor__echo", "vendor__add", "vendor__credential"} <= names
    assert text(await client.call_tool("vendor__echo", {"text": "from afar"})) == "from afar"
    assert text(await client.call_tool("vendor__add", {"a": 2, "b": 40})) == "42"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_remote_behind_a_header_secret_over_http(mode, mcpgw_bin, tmp_path, header_remote, secrets_dir):
    token, store = token_for(mcpgw_bin, tmp_path)
    gw = Gateway(mcpgw_bin, tmp_path, header_catalog(header_remote), "--auth", "token",
                 "--tokens", store, env={"MCPGW_SECRETS": f"file:{secrets_dir}"})
    try:
        async with Client(http_client(gw.url, token), mode=mode) as client:
            await exercise(client)
            # The server hands its credential back: the client sees the
            # secret's name, never its value.
            leaked = text(await client.call_tool("vendor__credential", {}))
            assert leaked == "Bearer [REDACTED:vendor.token]"
    finally:
        log = gw.stop()
    assert KEY not in log
    # The HTTP front speaks the stateless protocol to its backends first,
    # and the SDK server has it.
    assert "backend session open server=vendor protocol=2026-07-28" in log
    seen = header_remote.authorizations()
    assert seen and set(seen) == {f"Bearer {KEY}"}, "the client's own token reached the remote"
    assert token not in "".join(seen)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_remote_behind_a_header_secret_over_stdio(mode, mcpgw_bin, tmp_path, header_remote, secrets_dir):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(header_catalog(header_remote))
    log = tmp_path / "gateway.log"
    # The gateway's stderr (at trace level) into a file, through the shell.
    command = f"exec {shlex.quote(mcpgw_bin)} run --catalog {shlex.quote(str(catalog))} 2>>{shlex.quote(str(log))}"
    params = StdioServerParameters(command="/bin/sh", args=["-c", command], env={
        **os.environ, "MCPGW_LOG": "trace", "NO_COLOR": "1", "MCPGW_SECRETS": f"file:{secrets_dir}"})
    async with Client(params, mode=mode) as client:
        await exercise(client)
        assert text(await client.call_tool("vendor__credential", {})) == "Bearer [REDACTED:vendor.token]"
    shown = log.read_text()
    assert KEY not in shown
    # Over stdio the client's era is the one spoken to the remote.
    era = "2025-11-25" if mode == "legacy" else "2026-07-28"
    assert f"backend session open server=vendor protocol={era}" in shown
    assert set(header_remote.authorizations()) == {f"Bearer {KEY}"}


@pytest.fixture
def authserver():
    server = AuthServer([Registered("mcpgw", CLIENT_SECRET, ["mcp"], lifetime=2)])
    yield server
    server.stop()


@pytest.fixture
def token_remote(tmp_path, authserver):
    """remote_server.py admitting the authorization server's tokens for
    its own URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    remote = Remote.__new__(Remote)
    remote.port, remote.url, remote.seen = port, url, tmp_path / "seen"
    remote.args = ("--issuer", authserver.issuer, "--audience", url)
    remote.start()
    yield remote
    remote.kill()


def token_gateway(mcpgw_bin, tmp_path, authserver, remote):
    catalog = f"""version: 1
gateway:
  restart: {{ initial_backoff: 100ms, max_backoff: 500ms, circuit_after: 1000 }}
servers:
  vendor:
    url: {remote.url}
    allow_private: true
    oauth:
      client_credentials:
        token_url: {authserver.issuer}/token
        client_id: mcpgw
        client_secret: vendor.client-secret
        scopes: [mcp]
"""
    return Gateway(mcpgw_bin, tmp_path, catalog, env={
        "MCPGW_SECRETS": "env", "MCPGW_SECRET_VENDOR_CLIENT_SECRET": CLIENT_SECRET})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_remote_behind_client_credentials_refreshes_its_token(mode, mcpgw_bin, tmp_path, authserver, token_remote):
    remote = token_remote
    gw = token_gateway(mcpgw_bin, tmp_path, authserver, remote)
    try:
        async with Client(http_client(gw.url), mode=mode) as client:
            await exercise(client)
            first = list(authserver.issued)
            # The token lives 2 s and the remote allows no leeway: past its
            # life, only a fresh token gets through.
            time.sleep(2.5)
            assert text(await client.call_tool("vendor__echo", {"text": "later"})) == "later"
            assert len(authserver.issued) > len(first), "no new token was fetched"
    finally:
        log = gw.stop()
    seen = remote.authorizations()
    assert {f"Bearer {t}" for t in authserver.issued} >= set(seen)
    assert len(set(seen)) >= 2
    assert CLIENT_SECRET not in log
    for issued in authserver.issued:
        assert issued not in log


@pytest.mark.anyio
async def test_a_token_that_cannot_be_renewed_fails_the_server_and_is_retried(mcpgw_bin, tmp_path, authserver, token_remote):
    gw = token_gateway(mcpgw_bin, tmp_path, authserver, token_remote)
    try:
        async with Client(http_client(gw.url), mode="auto") as client:
            await exercise(client)
            authserver.stop()
            # Past the token's life the gateway must fetch another, and
            # the token endpoint is gone: the call fails (it does not
            # hang), the server is failed and retried.
            time.sleep(2.5)
            with pytest.raises(MCPError) as failed:
                await client.call_tool("vendor__echo", {"text": "x"})
            assert "could not be reached" in failed.value.message, failed.value.message
            gw.wait_for("vendor", "failed")
            # The restarts that follow say why they fail.
            deadline = time.monotonic() + 30
            while "has no access token: the token endpoint http://127.0.0.1:" not in gw.log.read_text():
                assert time.monotonic() < deadline, "no restart reported the token endpoint"
                time.sleep(0.1)
    finally:
        log = gw.stop()
    assert "restarting in" in log
    assert CLIENT_SECRET not in log


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_dead_remote_is_reported_and_retried_while_a_container_keeps_serving(mode, mcpgw_bin, tmp_path, header_remote, secrets_dir):
    local = "  local:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    gw = Gateway(mcpgw_bin, tmp_path, header_catalog(header_remote, local),
                 env={"MCPGW_SECRETS": f"file:{secrets_dir}"})
    try:
        async with Client(http_client(gw.url), mode=mode) as client:
            await exercise(client)
            header_remote.kill()
            # The call that finds it gone fails, with the reason.
            with pytest.raises(MCPError) as failed:
                await client.call_tool("vendor__echo", {"text": "anyone?"})
            assert "the remote server could not be reached" in failed.value.message
            assert "Connection refused" in failed.value.message, failed.value.message
            gw.wait_for("vendor", "failed")
            assert text(await client.call_tool("local__echo", {"text": "still here"})) == "still here"
            header_remote.start()
            gw.wait_for("vendor", "ready")
            assert text(await client.call_tool("vendor__echo", {"text": "back"})) == "back"
            assert text(await client.call_tool("local__echo", {"text": "and here"})) == "and here"
    finally:
        log = gw.stop()
    assert KEY not in log
    # Each failed start while it was gone was reported, with the cause.
    assert "Connection refused" in log


REFUSED_AT_LOAD = [
    ("http://127.0.0.1:9/mcp", False, "127.0.0.1 is a loopback address; set `allow_private: true`"),
    ("https://10.1.2.3/mcp", False, "10.1.2.3 is a private address (RFC 1918)"),
    ("https://100.64.0.9/mcp", False, "100.64.0.9 is a carrier-grade NAT address"),
    ("https://[fe80::1]/mcp", False, "fe80::1 is a link-local address"),
    ("https://[fd12::1]/mcp", False, "fd12::1 is a unique-local address"),
    ("http://169.254.169.254/latest/meta-data", True, "169.254.169.254 is a cloud metadata endpoint, never reachable"),
    ("https://[fd00:ec2::254]/", True, "fd00:ec2::254 is a cloud metadata endpoint, never reachable"),
    ("http://10.1.2.3/mcp", True, "reached over plain `http`; use `https`"),
    ("http://mcp.vendor.example/mcp", False, "plain `http` is accepted only on loopback"),
]


@pytest.mark.parametrize("url,allow_private,expect", REFUSED_AT_LOAD)
def test_private_loopback_link_local_and_metadata_urls_are_refused_at_load(url, allow_private, expect, mcpgw_bin, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"version: 1\nservers:\n  vendor:\n    url: {url}\n"
                       + ("    allow_private: true\n" if allow_private else ""))
    validated = mcpgw(mcpgw_bin, "validate", "--catalog", str(catalog))
    assert validated.returncode == 2, validated.stdout
    assert f"catalog.yaml:4:5: servers.vendor: `url` `{url}" in validated.stderr
    assert expect in validated.stderr, validated.stderr


def test_a_name_that_resolves_to_loopback_is_refused_when_connecting(mcpgw_bin, tmp_path, header_remote, secrets_dir):
    catalog = tmp_path / "catalog.yaml"
    # Valid as written (a name is not resolved at load); refused when the
    # gateway resolves it, before any request leaves.
    catalog.write_text(f"""version: 1
servers:
  vendor:
    url: https://localhost:{header_remote.port}/mcp
    headers:
      Authorization: {{ secret: vendor.token, format: "Bearer {{}}" }}
""")
    validated = mcpgw(mcpgw_bin, "validate", "--catalog", str(catalog))
    assert validated.returncode == 0, validated.stderr
    # `validate` shows it as a relaxation, with the secrets it is sent.
    assert f"relaxed: remote server at https://localhost:{header_remote.port}/mcp" in validated.stdout
    assert "credentials from secrets: vendor.token" in validated.stdout
    called = subprocess.run(
        [mcpgw_bin, "call", "--catalog", str(catalog), "vendor__echo", '{"text": "x"}'],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "MCPGW_LOG": "warn", "MCPGW_SECRETS": f"file:{secrets_dir}"})
    assert called.returncode == 1
    assert "remote server `vendor` is refused: https://localhost:" in called.stderr, called.stderr
    assert "`localhost` resolves only to refused addresses: " in called.stderr
    assert "is a loopback address; set `allow_private: true`" in called.stderr
    assert header_remote.authorizations() == []


class Redirector:
    """Answers every request with 307 to `location`; counts the hits."""

    def __init__(self, location):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                outer.hits += 1
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_DELETE = answer

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mcp"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("target", ["http://10.1.2.3/mcp", "http://169.254.169.254/latest", "loopback"])
def test_a_redirect_is_never_followed(target, mcpgw_bin, tmp_path):
    landing = Redirector("http://127.0.0.1:1/never")
    location = landing.url if target == "loopback" else target
    redirector = Redirector(location)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"version: 1\nservers:\n  vendor:\n    url: {redirector.url}\n    allow_private: true\n")
    try:
        called = mcpgw(mcpgw_bin, "call", "--catalog", str(catalog), "vendor__echo", '{"text": "x"}')
    finally:
        redirector.stop()
        landing.stop()
    assert called.returncode == 1
    assert f"the server redirected to {location}, and the gateway follows no redirect" in called.stderr, called.stderr
    assert redirector.hits >= 1
    # Even where the guard would admit the target, no request reaches it.
    assert landing.hits == 0
