"""The Streamable HTTP front, driven by the official Python client in both
eras, and by raw HTTP requests for what a client library would never send:
many concurrent sessions with no cross-talk, bearer tokens, Host and Origin
checks, the body limit, batches, and refusing to listen beyond loopback
without authentication."""

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import httpx2
import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

MODES = ["legacy", "auto"]
CATALOG = """version: 1
servers:
  one:
    image: mcpgw/testserver:dev
    pull: never
    secrets: { API_TOKEN: api.token }
  two:
    image: mcpgw/testserver:dev
    pull: never
"""
API = "api-Zx81-Qm4r-Lp20-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(url, method="GET", body=None, headers=None):
    """(status, headers, body text) of one request, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, lower(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, lower(error.headers), error.read().decode()


def lower(headers) -> dict:
    return {name.lower(): value for name, value in headers.items()}


PROFILES = """profiles:
  echo-only:
    tools: ["*__echo"]
  adder:
    tools: [two__add]
"""


class Gateway:
    def __init__(self, mcpgw_bin, tmp_path, *extra, env=None, catalog_text=CATALOG):
        catalog = tmp_path / "catalog.yaml"
        self.port = free_port()
        # A catalog may name the gateway's own URL (an OAuth resource).
        catalog.write_text(catalog_text.replace("{port}", str(self.port)))
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc = subprocess.Popen(
            [mcpgw_bin, "run", "--catalog", str(catalog), "--transport", "http",
             "--listen", f"127.0.0.1:{self.port}", *extra],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MCPGW_LOG": "info,rmcp=warn", "NO_COLOR": "1",
                 "MCPGW_SECRETS": "env", "MCPGW_SECRET_API_TOKEN": API, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = raw(f"http://127.0.0.1:{self.port}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "the HTTP gateway did not become ready"
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        assert self.proc.wait(timeout=15) == 0
        return self.proc.stderr.read()


@pytest.fixture
def gateway(mcpgw_bin, tmp_path):
    gw = Gateway(mcpgw_bin, tmp_path)
    yield gw
    log = gw.stop()
    assert API not in log


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_both_eras_list_and_call_over_http(mode, gateway):
    async with Client(gateway.url, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"one__echo", "two__echo"} <= names
        assert text(await client.call_tool("two__echo", {"text": "over http"})) == "over http"
        # Redaction holds on this front too.
        assert text(await client.call_tool("one__env", {"name": "API_TOKEN"})) == "[REDACTED:api.token]"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_eight_concurrent_sessions_never_cross_talk(mode, gateway):
    async def session(n):
        async with Client(gateway.url, mode=mode) as client:
            for i in range(10):
                payload = f"session {n} call {i}"
                assert text(await client.call_tool(f"{'one' if i % 2 else 'two'}__echo", {"text": payload})) == payload

    await asyncio.gather(*(session(n) for n in range(8)))


def test_foreign_host_or_origin_oversized_bodies_and_batches_are_refused(gateway):
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    json_headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for origin in ["null", "https://evil.example"]:
        status, _, _ = raw(gateway.url, "POST", ping, {**json_headers, "Origin": origin})
        assert status == 403, origin
    status, _, _ = raw(gateway.url, "POST", ping, {**json_headers, "Host": "rebind.example"})
    assert status == 403
    # An oversized body is refused as soon as its length is known, before
    # it is read.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.putrequest("POST", "/mcp")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(5 << 20))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    status, _, body = raw(gateway.url, "POST", json.dumps([json.loads(ping)]).encode(), json_headers)
    assert status == 400 and json.loads(body)["error"]["code"] == -32600, body
    status, _, _ = raw(gateway.url + "?access_token=abc", "POST", ping, json_headers)
    assert status == 400, "tokens never travel in URLs"
    status, _, body = raw(f"http://127.0.0.1:{gateway.port}/healthz")
    assert status == 200 and body.strip() == "ok"


def test_listening_beyond_loopback_needs_authentication(mcpgw_bin, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    done = subprocess.run(
        [mcpgw_bin, "run", "--catalog", str(catalog), "--transport", "http", "--listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 without authentication" in done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_bearer_tokens_are_required_when_authentication_is_on(mode, mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    created = subprocess.run([mcpgw_bin, "token", "create", "ci", "--tokens", str(store)],
                             capture_output=True, text=True, check=True)
    token = created.stdout.strip()
    assert token.startswith("mcpgw_") and token not in store.read_text()
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    gw = Gateway(mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store))
    try:
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        for presented in [None, "Bearer wrong", f"Basic {token}"]:
            extra = {"Authorization": presented} if presented else {}
            status, response_headers, _ = raw(gw.url, "POST", ping, {**headers, **extra})
            assert status == 401, presented
            assert response_headers.get("www-authenticate", "").startswith("Bearer"), response_headers
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                         timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(gw.url, http_client=http_client), mode=mode) as client:
            assert text(await client.call_tool("two__echo", {"text": "authorized"})) == "authorized"
        # A revocation takes effect in the running gateway, without a restart.
        revoked = subprocess.run([mcpgw_bin, "token", "revoke", "ci", "--tokens", str(store)],
                                 capture_output=True, text=True)
        assert revoked.returncode == 0
        bearer = {**headers, "Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 5
        while raw(gw.url, "POST", ping, bearer)[0] != 401:
            assert time.monotonic() < deadline, "the revoked token is still accepted"
            time.sleep(0.2)
    finally:
        log = gw.stop()
    assert token not in log


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tokens_bound_to_profiles_see_and_call_only_their_view(mode, mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    tokens = {}
    for name, profile in [("echoer", "echo-only"), ("adder", "adder"), ("admin", None)]:
        args = [mcpgw_bin, "token", "create", name, "--tokens", str(store)]
        if profile:
            args += ["--profile", profile]
        tokens[name] = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    listed = subprocess.run([mcpgw_bin, "token", "ls", "--tokens", str(store)],
                            capture_output=True, text=True, check=True).stdout
    assert "echoer" in listed and "echo-only" in listed and tokens["echoer"] not in listed
    gw = Gateway(mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store),
                 catalog_text=CATALOG + PROFILES)

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    try:
        async with client_for("echoer") as echoer, client_for("adder") as adder, client_for("admin") as admin:
            seen = {name: {t.name for t in (await c.list_tools()).tools}
                    for name, c in [("echoer", echoer), ("adder", adder), ("admin", admin)]}
            assert seen["echoer"] == {"one__echo", "two__echo"}, seen["echoer"]
            assert seen["adder"] == {"two__add"}, seen["adder"]
            assert {"one__echo", "two__add", "one__env"} <= seen["admin"]
            # A profile is a view of tools only: no prompts, no resources.
            assert (await echoer.list_prompts()).prompts == []
            assert (await echoer.list_resources()).resources == []
            assert len((await admin.list_prompts()).prompts) >= 1
            with pytest.raises(Exception):
                await adder.read_resource("test://info")
            assert text(await echoer.call_tool("two__echo", {"text": "mine"})) == "mine"
            assert text(await adder.call_tool("two__add", {"a": 2, "b": 3})) == "5"
            for client, tool, args in [(echoer, "two__add", {"a": 1, "b": 1}), (adder, "two__echo", {"text": "x"})]:
                with pytest.raises(Exception) as refused:
                    await client.call_tool(tool, args)
                assert f"unknown tool `{tool}`" in str(refused.value)
    finally:
        gw.stop()


def test_a_token_bound_to_an_unknown_profile_stops_the_start(mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    subprocess.run([mcpgw_bin, "token", "create", "lost", "--profile", "nowhere", "--tokens", str(store)],
                   capture_output=True, text=True, check=True)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    done = subprocess.run(
        [mcpgw_bin, "run", "--catalog", str(catalog), "--transport", "http",
         "--listen", f"127.0.0.1:{free_port()}", "--auth", "token", "--tokens", str(store)],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "token `lost` is bound to profile `nowhere`" in done.stderr


@pytest.mark.anyio
async def test_metrics_count_the_calls_that_were_made(gateway):
    async with Client(gateway.url, mode="auto") as client:
        for i in range(3):
            await client.call_tool("two__echo", {"text": f"counted {i}"})
        failed = await client.call_tool("two__env", {"name": "NOT_SET_ANYWHERE"})
        assert failed.is_error
        await client.call_tool("one__env", {"name": "API_TOKEN"})
    status, headers, body = raw(f"http://127.0.0.1:{gateway.port}/metrics")
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text"), headers
    lines = set(body.splitlines())
    assert body.rstrip().endswith("# EOF"), body
    for line in [
        'mcpgw_tool_calls_total{server="two",tool="echo",outcome="ok"} 3',
        'mcpgw_tool_calls_total{server="two",tool="env",outcome="error"} 1',
        'mcpgw_tool_call_duration_seconds_count{server="two",tool="echo"} 3',
        'mcpgw_server_up{server="one"} 1',
        "mcpgw_redactions_total 1",
    ]:
        assert line in lines, f"{line} not in\n{body}"
    assert any(line.startswith("mcpgw_http_sessions ") for line in lines), body


SAMPLER = """version: 1
servers:
  sampler:
    image: mcpgw/testserver:dev
    pull: never
    env: { MCPGW_TEST_LEGACY: "1" }
    relay: { sampling: true }
"""


@pytest.mark.anyio
async def test_server_requests_over_http_reach_only_the_call_they_belong_to(mcpgw_bin, tmp_path):
    """A shared server's sampling request goes to the one call in flight at
    that server: a 2026-07-28 call gets it as an input-required result, a
    handshake-era session's call is asked directly on its session. With two
    calls in flight there the request cannot say which it belongs to, and
    fails with that reason: never another session's request."""
    from mcp_types import CreateMessageResult, TextContent

    def sampling_as(who):
        async def sampling(context, params):
            return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"sampled for {who}"),
                                       model="witness-model", stop_reason="endTurn")
        return sampling

    gw = Gateway(mcpgw_bin, tmp_path, catalog_text=SAMPLER)
    try:
        async with Client(gw.url, mode="auto", sampling_callback=sampling_as("modern")) as modern:
            answer = await modern.call_tool("sampler__sample", {"prompt": "hello"})
            assert "sampled for modern" in text(answer), text(answer)
        async with Client(gw.url, mode="legacy", sampling_callback=sampling_as("legacy")) as legacy:
            answer = await legacy.call_tool("sampler__sample", {"prompt": "hello"})
            assert not answer.is_error and "sampled for legacy" in text(answer), text(answer)
        async with Client(gw.url, mode="legacy", sampling_callback=sampling_as("a")) as a:
            async with Client(gw.url, mode="legacy", sampling_callback=sampling_as("b")) as b:
                outcome = {}

                async def slow():
                    outcome["slow"] = await a.call_tool("sampler__slow", {"ms": 2000})

                async with anyio.create_task_group() as calls:
                    calls.start_soon(slow)
                    await anyio.sleep(0.5)
                    refused = await b.call_tool("sampler__sample", {"prompt": "hello"})
                assert refused.is_error and "2 calls from the client are in progress" in text(refused), text(refused)
                assert text(outcome["slow"]) == "slept 2000ms"
    finally:
        gw.stop()


def session_containers(server: str) -> dict[str, str]:
    """The running containers of `server`, as {session label: container id}."""
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=io.mcpgw.server={server}",
         "--format", '{{.ID}} {{.Label "io.mcpgw.session"}}'],
        capture_output=True, text=True, check=True,
    ).stdout
    return {session: cid for cid, _, session in (line.partition(" ") for line in out.splitlines())}


def wait_for(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def scoped_catalog(server: str) -> str:
    return f"""version: 1
servers:
  {server}:
    image: mcpgw/testserver:dev
    pull: never
    scope: session
    env: {{ MCPGW_TEST_LEGACY: "1" }}   # a handshake-era server, which may ask for sampling
    relay: {{ sampling: true }}
  shared:
    image: mcpgw/testserver:dev
    pull: never
"""


@pytest.mark.anyio
async def test_session_scope_gives_each_session_its_own_container_removed_when_it_ends(mcpgw_bin, tmp_path):
    """`scope: session`: the first use in a session starts a container for
    that session alone (its own hostname and its own state), and closing
    the session removes it; a shared server stays one container."""
    from mcp_types import CreateMessageResult, TextContent

    async def sampling(context, params):
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="sampled for my session"),
                                   model="witness-model", stop_reason="endTurn")

    server = f"private{free_port()}"
    gw = Gateway(mcpgw_bin, tmp_path, catalog_text=scoped_catalog(server))
    try:
        # The container that taught the gateway the server's tools is gone.
        wait_for(lambda: session_containers(server) == {}, "the first instance was not removed")
        async with Client(gw.url, mode="legacy", sampling_callback=sampling) as b:
            async with Client(gw.url, mode="legacy", sampling_callback=sampling) as a:
                names = {t.name for t in (await a.list_tools()).tools}
                assert f"{server}__echo" in names and "shared__echo" in names
                # Nothing starts until a session uses the server.
                assert session_containers(server) == {}
                host_a = text(await a.call_tool(f"{server}__env", {"name": "HOSTNAME"}))
                for i in range(3):
                    assert text(await a.call_tool(f"{server}__echo", {"text": f"a{i}"})) == f"a{i}"
                host_b = text(await b.call_tool(f"{server}__env", {"name": "HOSTNAME"}))
                assert text(await a.call_tool(f"{server}__env", {"name": "HOSTNAME"})) == host_a
                # One container per session (Docker names a container's
                # host after its id), each with its own session's state.
                assert sorted(session_containers(server).values()) == sorted([host_a, host_b])
                assert host_a != host_b
                stats_a = json.loads(text(await a.call_tool(f"{server}__stats", {})))
                stats_b = json.loads(text(await b.call_tool(f"{server}__stats", {})))
                assert stats_a.get("echo") == 3 and "echo" not in stats_b, (stats_a, stats_b)
                # A session's instance has one owner, so its sampling
                # requests reach a handshake-era HTTP session, which a
                # shared server's cannot.
                sampled = await b.call_tool(f"{server}__sample", {"prompt": "hello"})
                assert "sampled for my session" in text(sampled), text(sampled)
            # Session a ended (the client closed it): its container goes,
            # session b's stays and still serves it.
            wait_for(lambda: list(session_containers(server).values()) == [host_b],
                     "a session's container outlived its session")
            assert text(await b.call_tool(f"{server}__env", {"name": "HOSTNAME"})) == host_b
        wait_for(lambda: session_containers(server) == {}, "a session's container outlived its session")
        # A new session starts afresh.
        async with Client(gw.url, mode="legacy") as c:
            stats_c = json.loads(text(await c.call_tool(f"{server}__stats", {})))
            assert "echo" not in stats_c, stats_c
            assert len(session_containers(server)) == 1
        wait_for(lambda: session_containers(server) == {}, "the third session's container outlived it")
        # A 2026-07-28 request over HTTP belongs to no session: refused with
        # the reason, while shared servers serve it.
        async with Client(gw.url, mode="auto") as modern:
            with pytest.raises(MCPError) as refused:
                await modern.call_tool(f"{server}__echo", {"text": "x"})
            assert "scope: session" in refused.value.message, refused.value.message
            assert text(await modern.call_tool("shared__echo", {"text": "y"})) == "y"
        assert session_containers(server) == {}
    finally:
        log = gw.stop()
    assert "client session ended; removing its instance" in log, log
    assert session_containers(server) == {}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_session_scope_over_stdio_is_the_one_client_session(mode, mcpgw_bin, tmp_path):
    """Over stdio the client is the session, in both eras: its instance
    starts on first use, serves every call, and goes with the gateway."""
    from mcp import StdioServerParameters

    server = f"private{free_port()}"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(scoped_catalog(server))
    params = StdioServerParameters(command=mcpgw_bin, args=["run", "--catalog", str(catalog)],
                                   env={"MCPGW_LOG": "warn"})
    async with Client(params, mode=mode) as client:
        host = text(await client.call_tool(f"{server}__env", {"name": "HOSTNAME"}))
        assert text(await client.call_tool(f"{server}__echo", {"text": "one"})) == "one"
        assert text(await client.call_tool(f"{server}__env", {"name": "HOSTNAME"})) == host
        assert list(session_containers(server).values()) == [host]
    wait_for(lambda: session_containers(server) == {}, "the session's container outlived the gateway")


@pytest.mark.anyio
@pytest.mark.parametrize("backend_era", ["2026-07-28", "handshake"])
async def test_a_resource_update_reaches_only_the_sessions_that_subscribed(backend_era, mcpgw_bin, tmp_path):
    """Two HTTP sessions of one gateway: the one that subscribed to a
    resource gets its update, the other (whose own call caused it) gets
    none."""
    env = '    env: { MCPGW_TEST_LEGACY: "1" }\n' if backend_era == "handshake" else ""
    catalog = f"version: 1\nservers:\n  res:\n    image: mcpgw/testserver:dev\n    pull: never\n{env}"
    got = {"a": [], "b": []}

    def on_message(who):
        async def handle(message):
            method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
            if method == "notifications/resources/updated":
                got[who].append(message)
        return handle

    gw = Gateway(mcpgw_bin, tmp_path, catalog_text=catalog)
    try:
        # b is the gateway's first session: a gateway that knew only one
        # client would tell b of a's subscription.
        async with Client(gw.url, mode="legacy", message_handler=on_message("b")) as b:
            await b.list_tools()
            async with Client(gw.url, mode="legacy", message_handler=on_message("a")) as a:
                await a.subscribe_resource("test://info")
                await b.call_tool("res__touch", {"uri": "test://info"})
                with anyio.fail_after(10):
                    while not got["a"]:
                        await anyio.sleep(0.05)
                # Time for a stray update to reach b, were one sent.
                await b.call_tool("res__touch", {"uri": "test://elsewhere"})
                await anyio.sleep(0.5)
                assert len(got["a"]) == 1 and got["b"] == [], got
    finally:
        gw.stop()
