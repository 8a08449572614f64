"""Search mode (`gateway.tool_mode: search`), through the official MCP
Python SDK in both protocol eras and over both fronts: the client lists
`find_tools`, `call_tool` and the `pinned` tools instead of the merged
list; `find_tools` ranks the expected tool first for a query in words;
`call_tool` calls it through the one call path (the audit trail records
the tool it named); over HTTP, a token's profile bounds what is found and
called, and a profile can keep `tool_mode: all`."""

import json
import subprocess

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from helpers import gateway, listed
from test_http import Gateway

MODES = ["legacy", "auto"]
CATALOG = """version: 1
gateway:
  tool_mode: search
  pinned: [ts__echo]
servers:
  ts:
    image: mcpgw/testserver:dev
    pull: never
    tools:
      allow: [echo, add, read_file, probe, slow, log]
      describe: { probe: "Reports how the container is confined: capabilities, user, filesystem." }
  other:
    image: mcpgw/testserver:dev
    pull: never
    tools:
      allow: [slow]
"""
PROFILES = """profiles:
  adder:
    tools: [ts__add, ts__probe]
  everything:
    tools: ["*"]
    tool_mode: all
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


async def found(client, query, **extra) -> list:
    result = await client.call_tool("find_tools", {"query": query, **extra})
    assert not result.is_error, result
    return [t["name"] for t in result.structured_content["tools"]]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_over_stdio_the_client_finds_and_calls_tools(mode, mcpgw_bin, tmp_path):
    path = tmp_path / "catalog.yaml"
    audit = tmp_path / "audit.jsonl"
    path.write_text(CATALOG.replace("gateway:\n", f"gateway:\n  audit: {{ path: {audit} }}\n", 1))
    async with Client(gateway(mcpgw_bin, str(path)), mode=mode) as client:
        tools = await listed(client)
        assert set(tools) == {"find_tools", "call_tool", "ts__echo"}, sorted(tools)
        assert tools["find_tools"].input_schema["required"] == ["query"]

        assert (await found(client, "add two numbers"))[0] == "ts__add"
        assert (await found(client, "read the contents of a file"))[0] == "ts__read_file"
        # The catalog's own description is what is searched.
        assert (await found(client, "which capabilities does the container have"))[0] == "ts__probe"
        assert await found(client, "add two numbers", limit=1) == ["ts__add"]
        result = await client.call_tool("find_tools", {"query": "add two numbers"})
        entry = result.structured_content["tools"][0]
        assert set(entry["inputSchema"]["properties"]) == {"a", "b"}, entry
        assert entry["description"].startswith("Adds `a` and `b`"), entry

        added = await client.call_tool("call_tool", {"name": "ts__add", "arguments": {"a": 2, "b": 3}})
        assert text(added) == "5"
        assert added.structured_content == {"sum": 5.0}
        # A tool the allowlist hides is neither found nor callable.
        assert "ts__env" not in await found(client, "value of an environment variable")
        with pytest.raises(MCPError) as err:
            await client.call_tool("call_tool", {"name": "ts__env", "arguments": {"name": "HOME"}})
        assert "is not allowed" in err.value.message, err.value.message
        with pytest.raises(MCPError) as err:
            await client.call_tool("call_tool", {"arguments": {}})
        assert "`call_tool` needs `name`" in err.value.message, err.value.message
        with pytest.raises(MCPError) as err:
            await client.call_tool("find_tools", {"query": "x", "server": "nope"})
        assert "no server `nope`" in err.value.message, err.value.message
    # The audit trail names the tool `call_tool` called, as for a direct call.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    calls = [r for r in records if r.get("exposed") == "ts__add"]
    assert len(calls) == 1, records
    assert calls[0]["server"] == "ts" and calls[0]["upstream"] == "add", calls
    assert calls[0]["decision"] == "allowed" and calls[0]["outcome"] == "ok", calls
    finds = [r for r in records if r.get("exposed") == "find_tools"]
    assert len(finds) == 7 and finds[0]["decision"] == "allowed", finds


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_over_http_a_profile_bounds_what_is_found_and_called(mode, mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    tokens = {}
    for name, profile in [("adder", "adder"), ("all", "everything"), ("admin", None)]:
        args = [mcpgw_bin, "token", "create", name, "--tokens", str(store)]
        if profile:
            args += ["--profile", profile]
        tokens[name] = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    gw = Gateway(mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store),
                 catalog_text=CATALOG + PROFILES)

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    try:
        async with client_for("adder") as adder, client_for("all") as everything, client_for("admin") as admin:
            # Pinned `ts__echo` is outside the profile: not listed.
            assert set(await listed(adder)) == {"find_tools", "call_tool"}
            assert (await found(adder, "add two numbers"))[0] == "ts__add"
            # Never found, whatever the query, nor callable.
            for query in ["echo text back", "echoes text", "read the contents of a file"]:
                hits = await found(adder, query, limit=20)
                assert set(hits) <= {"ts__add", "ts__probe"}, (query, hits)
            for name, args in [("ts__echo", {"text": "x"}), ("ts__read_file", {"path": "/etc/hostname"})]:
                with pytest.raises(MCPError) as err:
                    await adder.call_tool("call_tool", {"name": name, "arguments": args})
                assert f"unknown tool `{name}`" in err.value.message, err.value.message
            assert text(await adder.call_tool("call_tool", {"name": "ts__add", "arguments": {"a": 1, "b": 1}})) == "2"
            # A server outside the profile cannot be searched, and is not
            # named to its client, not even in an error.
            for server in ["other", "nope"]:
                with pytest.raises(MCPError) as err:
                    await adder.call_tool("find_tools", {"query": "wait", "server": server})
                assert f"no server `{server}` among this client's; they are ts" in err.value.message, err.value.message
                assert "other" not in err.value.message.replace(f"`{server}`", ""), err.value.message

            # A profile with `tool_mode: all` lists everything, as before.
            names = set(await listed(everything))
            assert {"ts__echo", "ts__add", "ts__read_file"} <= names and "find_tools" not in names, names
            # No profile: the gateway's mode, every allowed tool findable.
            assert set(await listed(admin)) == {"find_tools", "call_tool", "ts__echo"}
            assert (await found(admin, "echoes text back"))[0] == "ts__echo"
            assert await found(admin, "slow", server="other") == ["other__slow"]
            assert text(await admin.call_tool("call_tool", {"name": "ts__echo", "arguments": {"text": "over http"}})) == "over http"
    finally:
        gw.stop()
