"""The official MCP Python SDK drives `mcpgw run` over stdio, in both protocol
eras, against real reference servers (mcp-server-time, mcp-server-git) and
mcpgw's test server, each in its own container."""

import pytest
from mcp import Client, MCPError, StdioServerParameters

EXPECTED_PROTOCOL = {"legacy": "2025-11-25", "auto": "2026-07-28"}


async def all_pages(list_page, attr):
    items, cursor = [], None
    while True:
        page = await list_page(cursor=cursor)
        items += getattr(page, attr)
        cursor = page.next_cursor
        if cursor is None:
            return items


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_gateway_over_stdio(mode, mcpgw_bin, witness_catalog):
    params = StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", witness_catalog],
        env={"MCPGW_LOG": "warn"},
    )
    async with Client(params, mode=mode) as client:
        assert client.protocol_version == EXPECTED_PROTOCOL[mode]
        assert client.server_info is None or client.server_info.name == "mcpgw"

        # Namespaced, merged lists; denied tools are not listed.
        tools = {t.name for t in await all_pages(client.list_tools, "tools")}
        for name in ["time__get_current_time", "git__git_status", "git__git_log", "testserver__echo"]:
            assert name in tools, (name, sorted(tools))
        for hidden in ["time__convert_time", "git__git_commit", "git__git_add", "testserver__crash", "testserver__env"]:
            assert hidden not in tools, (hidden, sorted(tools))

        # Calls are routed to the right container.
        now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not now.is_error and "UTC" in text(now), text(now)
        status = await client.call_tool("git__git_status", {"repo_path": "/repo"})
        assert not status.is_error and "branch" in text(status).lower(), text(status)
        log = await client.call_tool("git__git_log", {"repo_path": "/repo", "max_count": 1})
        assert not log.is_error and "commit" in text(log).lower(), text(log)
        echo = await client.call_tool("testserver__echo", {"text": f"hello {mode}"})
        assert text(echo) == f"hello {mode}"
        added = await client.call_tool("testserver__add", {"a": 2, "b": 40})
        assert added.structured_content == {"sum": 42.0}

        # Denied tools are refused, and the backend never sees the call.
        for refused in ["testserver__crash", "time__convert_time", "git__git_commit"]:
            with pytest.raises(MCPError) as err:
                await client.call_tool(refused, {})
            assert "is not allowed" in err.value.message, err.value.message
        stats = await client.call_tool("testserver__stats", {})
        assert "crash" not in stats.structured_content, stats.structured_content

        with pytest.raises(MCPError) as err:
            await client.call_tool("nobody__nothing", {})
        assert "unknown tool" in err.value.message

        # Prompts and resources are reachable through the gateway.
        prompts = {p.name for p in await all_pages(client.list_prompts, "prompts")}
        assert "testserver__greet" in prompts, prompts
        greeting = await client.get_prompt("testserver__greet", {"name": "witness"})
        assert greeting.messages[0].content.text == "Hello, witness!"
        resources = {str(r.uri) for r in await all_pages(client.list_resources, "resources")}
        assert "test://info" in resources, resources
        info = await client.read_resource("test://info")
        assert info.contents[0].text == "served by mcpgw-testserver"
        with pytest.raises(MCPError):
            await client.read_resource("test://nothing-here")
