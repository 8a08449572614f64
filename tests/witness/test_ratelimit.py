"""Rate limits (`limits:` in the catalog), driven by the official Python
client in both eras: over HTTP with three tokens, a client's loop past its
`per_client` burst gets ToolHive's error with `retryAfterSeconds` while
another token is unaffected, a tool's limit holds across clients, a
server's across everyone; over stdio the one client has its bucket. Each
refusal is counted in /metrics and recorded in the audit trail as
`rate_limited`, and the refused calls never reach the server.

Fair sharing (`concurrency.per_client`): one token saturating a server's
places and queue does not make another's call wait behind its queue.

Every rate here refills once an hour, so no bucket refills during a test:
what passes and what is refused depends on counts, not on timing."""

import json
import re
import subprocess
import time

import anyio

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from test_http import Gateway, raw

MODES = ["legacy", "auto"]
RATE_LIMITED = -32029

CATALOG = """version: 1
servers:
  pc:
    image: mcpgw/testserver:dev
    pull: never
    limits: { per_client: { rate: 1/h, burst: 3 }, tools: { nope: { rate: 1/h } } }
  tl:
    image: mcpgw/testserver:dev
    pull: never
    limits: { tools: { echo: { rate: 1/h, burst: 2 } } }
  sv:
    image: mcpgw/testserver:dev
    pull: never
    limits: { server: { rate: 1/h, burst: 3 } }
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


async def outcomes(client, tool, n, args=None) -> list:
    """`ok`, or the refusal (MCPError), for each of `n` calls."""
    out = []
    for _ in range(n):
        try:
            result = await client.call_tool(tool, args or {"text": "hi"})
            assert not result.is_error, result
            out.append("ok")
        except MCPError as err:
            out.append(err)
    return out


def refused(err, path, scope, rate="1/h", burst=None):
    """`err` is the rate limit's refusal for the limit at `path`."""
    assert isinstance(err, MCPError), err
    assert err.code == RATE_LIMITED, (err.code, err.message)
    assert err.message.startswith(f"Rate limit exceeded: `{path}`"), err.message
    # An hour's rate: the next token is about an hour away.
    assert 3000 < err.data["retryAfterSeconds"] <= 3600, err.data
    assert err.data["limit"] == {"path": path, "scope": scope, "rate": rate, "burst": burst}, err.data


def stats(result) -> dict:
    return json.loads(text(result))


@pytest.fixture
def tokens(mcpgw_bin, tmp_path) -> tuple:
    store = tmp_path / "tokens.json"
    made = {}
    for name in ["alice", "bob", "carol"]:
        made[name] = subprocess.run(
            [mcpgw_bin, "token", "create", name, "--tokens", str(store)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    return store, made


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_http_limits_per_client_per_tool_and_per_server(mode, mcpgw_bin, tmp_path, tokens):
    store, secret = tokens
    audit = tmp_path / "audit.jsonl"
    gw = Gateway(
        mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store),
        catalog_text=CATALOG.replace("servers:", f"gateway:\n  audit: {{ path: {audit} }}\nservers:", 1),
    )

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    try:
        async with client_for("alice") as alice, client_for("bob") as bob, client_for("carol") as carol:
            # per_client: alice's loop gets the burst, then the error; bob,
            # another token, still has his whole bucket.
            looped = await outcomes(alice, "pc__echo", 6)
            assert looped[:3] == ["ok"] * 3, looped
            for err in looped[3:]:
                refused(err, "servers.pc.limits.per_client", "client", burst=3)
            assert await outcomes(bob, "pc__echo", 3) == ["ok"] * 3
            refused((await outcomes(bob, "pc__echo", 1))[0], "servers.pc.limits.per_client", "client", burst=3)

            # A tool's limit is shared: alice and bob take its two tokens,
            # carol is refused; the server's other tools are not limited.
            assert await outcomes(alice, "tl__echo", 1) == ["ok"]
            assert await outcomes(bob, "tl__echo", 1) == ["ok"]
            refused((await outcomes(carol, "tl__echo", 1))[0], "servers.tl.limits.tools.echo", "shared", burst=2)
            assert await outcomes(carol, "tl__add", 3, {"a": 1, "b": 2}) == ["ok"] * 3

            # A server's limit is everyone's: three calls between them,
            # then no client gets through, whatever it calls there.
            assert await outcomes(alice, "sv__echo", 2) == ["ok"] * 2
            assert await outcomes(bob, "sv__add", 1, {"a": 1, "b": 2}) == ["ok"]
            for client in [alice, bob, carol]:
                refused((await outcomes(client, "sv__echo", 1))[0], "servers.sv.limits.server", "shared", burst=3)

            # What a server saw: only the calls that passed (its stats tool
            # is under the same limits, so ask the server without one).
            seen = stats(await carol.call_tool("pc__stats", {}))
            assert seen.get("echo") == 6, seen
            seen = stats(await alice.call_tool("tl__stats", {}))
            assert seen.get("echo") == 2 and seen.get("add") == 3, seen

        status, _, metrics = raw(f"http://127.0.0.1:{gw.port}/metrics",
                                 headers={"Authorization": f"Bearer {secret['alice']}"})
        assert status == 200
        # alice 3 and bob 1 (per_client), carol 1 (tool), 3 (server).
        assert 'mcpgw_refused_requests_total{reason="rate_limited"} 8' in metrics, metrics
    finally:
        log = gw.stop()
    assert "servers.pc.limits.tools.nope: the server offers no tool `nope`" in log, log
    calls = [json.loads(line) for line in audit.read_text().splitlines()]
    limited = [(r["client"], r["exposed"]) for r in calls
               if r["event"] == "call" and r["decision"] == "rate_limited"]
    assert limited == [("alice", "pc__echo")] * 3 + [("bob", "pc__echo"), ("carol", "tl__echo")] + [
        ("alice", "sv__echo"), ("bob", "sv__echo"), ("carol", "sv__echo")], limited
    record = next(r for r in calls if r.get("decision") == "rate_limited")
    assert record["server"] == "pc" and "outcome" not in record
    assert record["error"].startswith("Rate limit exceeded"), record


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_stdio_client_has_one_bucket_for_every_limited_request(mode, mcpgw_bin, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "version: 1\n"
        "gateway:\n  limits: { per_client: { rate: 1/h, burst: 4 } }\n"
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    )
    params = StdioServerParameters(command=mcpgw_bin, args=["run", "--catalog", str(catalog)],
                                   env={"MCPGW_LOG": "warn"})
    async with Client(params, mode=mode) as client:
        # Lists are not limited.
        for _ in range(6):
            await client.list_tools()
        assert await outcomes(client, "t__echo", 2) == ["ok"] * 2
        # A resource read and a prompt take from the same bucket.
        await client.read_resource("test://info")
        prompts = (await client.list_prompts()).prompts
        assert prompts, "the test server has a prompt"
        prompt = prompts[0]
        arguments = {a.name: "x" for a in (prompt.arguments or [])}
        await client.get_prompt(prompt.name, arguments)
        for request in [
            client.call_tool("t__echo", {"text": "hi"}),
            client.read_resource("test://info"),
            client.get_prompt(prompt.name, arguments),
        ]:
            with pytest.raises(MCPError) as err:
                await request
            refused(err.value, "gateway.limits.per_client", "client", burst=4)


def gauge(metrics: str, name: str, server: str) -> int:
    found = re.search(rf'^{name}{{server="{server}"}} (\d+)$', metrics, re.M)
    return int(found.group(1)) if found else -1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_busy_client_does_not_make_another_wait_behind_its_queue(mode, mcpgw_bin, tmp_path, tokens):
    store, secret = tokens
    gw = Gateway(
        mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store),
        catalog_text="version: 1\nservers:\n  f:\n    image: mcpgw/testserver:dev\n    pull: never\n"
                     "    concurrency: { in_flight: 2, queue: 20, per_client: 1 }\n",
    )

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    def load():
        status, _, metrics = raw(f"http://127.0.0.1:{gw.port}/metrics",
                                 headers={"Authorization": f"Bearer {secret['alice']}"})
        assert status == 200
        return gauge(metrics, "mcpgw_server_calls_in_flight", "f"), gauge(metrics, "mcpgw_server_calls_queued", "f")

    def wait_for_load(expected):
        deadline = time.monotonic() + 30
        while (seen := load()) != expected:
            assert time.monotonic() < deadline, f"load {seen}, expected {expected}"
            time.sleep(0.05)

    done = []
    try:
        async with client_for("alice") as alice, client_for("bob") as bob:
            async def call(client, who, n):
                result = await client.call_tool("f__echo", {"text": f"{who}{n}", "delay_ms": 300})
                assert text(result) == f"{who}{n}"
                done.append(who)

            async with anyio.create_task_group() as calls:
                for n in range(10):
                    calls.start_soon(call, alice, "alice", n)
                # alice has both places and eight calls queued; then bob.
                await anyio.to_thread.run_sync(wait_for_load, (2, 8))
                calls.start_soon(call, bob, "bob", 0)
                await anyio.to_thread.run_sync(wait_for_load, (2, 9))
        # bob took the first place that freed, ahead of alice's eight: at
        # most the two calls in flight when he came, and the one that
        # started with his, ended before his. First come first served, all
        # ten of alice's would have.
        assert len(done) == 11 and done.count("bob") == 1, done
        assert done.index("bob") <= 3, done
        assert load() == (0, 0)
    finally:
        gw.stop()
