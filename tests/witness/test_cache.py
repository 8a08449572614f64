"""The result cache (`servers.X.cache`), driven by the official Python
client in both eras over HTTP: two identical calls of a cached read-only,
idempotent tool (the reference `mcp-server-time`'s `get_current_time`)
reach the server once within the TTL, and again after it; a client of
another profile never gets another view's result, while two clients of one
profile share theirs; a tool the catalog marks but whose definition is not
idempotent is never cached, and the gateway says so. What reached the
server is read from /metrics (`mcpgw_tool_calls_total` counts forwarded
calls). And the cache hints (SEP-2549) of the lists a `2026-07-28` client
gets: `private` for a profile's view, `public` for the whole."""

import re
import subprocess
import time

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from test_http import Gateway, raw

MODES = ["legacy", "auto"]
TTL_SECONDS = 3
CATALOG = f"""version: 1
servers:
  time:
    image: mcpgw/python-servers:dev
    pull: never
    entrypoint: ["/opt/mcp/bin/mcp-server-time"]
    command: ["--local-timezone", "UTC"]
    cache: {{ get_current_time: {{ ttl: {TTL_SECONDS}s }} }}
  t:
    image: mcpgw/testserver:dev
    pull: never
    cache: {{ add: {{ ttl: 1h }} }}
profiles:
  timely:
    tools: ["time__*"]
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def counter(metrics: str, name: str, labels: str) -> int:
    found = re.search(rf"^{name}{{{re.escape(labels)}}} (\d+)$", metrics, re.M)
    return int(found.group(1)) if found else 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_cached_tool_reaches_its_server_once_per_ttl_and_view(mode, mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    secret = {}
    for name, profile in [("alice", None), ("bob", "timely"), ("carol", "timely")]:
        args = [mcpgw_bin, "token", "create", name, "--tokens", str(store)]
        if profile:
            args += ["--profile", profile]
        secret[name] = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    gw = Gateway(mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store), catalog_text=CATALOG)

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    def metrics() -> str:
        status, _, body = raw(f"http://127.0.0.1:{gw.port}/metrics",
                              headers={"Authorization": f"Bearer {secret['alice']}"})
        assert status == 200
        return body

    def forwarded(server, tool) -> int:
        return counter(metrics(), "mcpgw_tool_calls_total", f'server="{server}",tool="{tool}",outcome="ok"')

    utc = {"timezone": "UTC"}
    try:
        async with client_for("alice") as alice, client_for("bob") as bob, client_for("carol") as carol:
            # SEP-2549 hints, for `2026-07-28` clients: a profile's list is
            # its own (private), the whole list anyone's (public).
            listed = {name: await c.list_tools() for name, c in [("alice", alice), ("bob", bob)]}
            # (A handshake-era result has no such fields; the SDK reads
            # their absence as 0 and private, so legacy mode shows nothing.)
            if mode == "auto":
                assert (listed["alice"].ttl_ms, listed["alice"].cache_scope) == (5000, "public")
                assert (listed["bob"].ttl_ms, listed["bob"].cache_scope) == (5000, "private")
            first = text(await alice.call_tool("time__get_current_time", utc))
            again = text(await alice.call_tool("time__get_current_time", utc))
            assert again == first, "the same result, from the cache"
            assert forwarded("time", "get_current_time") == 1
            hits = 'server="time",tool="get_current_time"'
            assert counter(metrics(), "mcpgw_result_cache_hits_total", hits) == 1
            assert counter(metrics(), "mcpgw_result_cache_misses_total", hits) == 1
            # Other arguments are another call.
            await alice.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
            assert forwarded("time", "get_current_time") == 2
            # Another view (bob's profile) never gets alice's result; carol,
            # of the same profile as bob, gets his.
            await bob.call_tool("time__get_current_time", utc)
            assert forwarded("time", "get_current_time") == 3
            await carol.call_tool("time__get_current_time", utc)
            assert forwarded("time", "get_current_time") == 3
            assert counter(metrics(), "mcpgw_result_cache_hits_total", hits) == 2
            held = re.search(r"^mcpgw_result_cache_bytes (\d+)$", metrics(), re.M)
            assert held and int(held.group(1)) > len(first), "three results are held"
            # Past the TTL, the server is asked again.
            time.sleep(TTL_SECONDS + 0.5)
            await alice.call_tool("time__get_current_time", utc)
            assert forwarded("time", "get_current_time") == 4

            # `add` is read-only but not idempotent: never cached.
            for _ in range(2):
                assert text(await alice.call_tool("t__add", {"a": 1, "b": 2})) == "3"
            assert forwarded("t", "add") == 2
    finally:
        log = gw.stop()
    assert "servers.t.cache.add: the tool's definition does not say it is read-only and idempotent" in log, log
    assert "servers.time.cache" not in log, log
