"""The one relay path keeps its guarantees for a stdio client in both eras:
deadlines that cancel at the server, a crash reported with its cause,
progress that keeps a call alive, a server's bounds (a call queues for a
place, and beyond the queue is refused at once), and the backend's own
errors passed through unchanged."""

import os

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters

MODES = ["legacy", "auto"]
CATALOG = """version: 1
gateway:
  restart: { initial_backoff: 100ms, max_backoff: 2s, circuit_after: 4, circuit_open: 60s }
  max_call_timeout: 3s
servers:
  t:
    image: mcpgw/testserver:dev
    pull: never
    call_timeout: 1s
  u:
    image: mcpgw/testserver:dev
    pull: never
  q:
    image: mcpgw/testserver:dev
    pull: never
    concurrency: { in_flight: 1, queue: 1 }
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def gateway(mcpgw_bin, tmp_path, mode):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    params = StdioServerParameters(
        command=mcpgw_bin, args=["run", "--catalog", str(catalog)], env={"MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn")}
    )
    return Client(params, mode=mode)


async def stats(client, server):
    return (await client.call_tool(f"{server}__stats", {})).structured_content


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_deadline_cancels_at_the_server_and_progress_keeps_a_call_alive(mode, mcpgw_bin, tmp_path):
    async with gateway(mcpgw_bin, tmp_path, mode) as client:
        await client.list_tools()
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("t__hang", {})
        assert (
            "server `t` did not answer tools/call `t__hang` within 1s; the request was cancelled at the server"
            in timed_out.value.message
        ), timed_out.value.message
        with anyio.fail_after(5):
            while (await stats(client, "t")).get("hang_cancelled") != 1:
                await anyio.sleep(0.1)
        # 1.8 s in six steps: each progress report restarts the 1 s deadline.
        slow = await client.call_tool("t__slow", {"ms": 1800, "steps": 6})
        assert not slow.is_error and text(slow) == "slept 1800ms", text(slow)
        # But never past `max_call_timeout`.
        with pytest.raises(MCPError) as too_long:
            await client.call_tool("t__slow", {"ms": 4800, "steps": 16})
        assert "within 3s" in too_long.value.message, too_long.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_crash_mid_call_names_its_cause_and_spares_the_other_server(mode, mcpgw_bin, tmp_path):
    async with gateway(mcpgw_bin, tmp_path, mode) as client:
        await client.list_tools()
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("t__crash", {"code": 7})
        message = crashed.value.message
        assert "server `t` failed during tools/call `t__crash`" in message and "7" in message, message
        echo = await client.call_tool("u__echo", {"text": "unaffected"})
        assert text(echo) == "unaffected"
        with anyio.fail_after(20):
            while True:
                try:
                    back = await client.call_tool("t__echo", {"text": "back"})
                    break
                except MCPError:
                    await anyio.sleep(0.2)
        assert text(back) == "back"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_backends_own_answers_pass_unchanged(mode, mcpgw_bin, tmp_path):
    async with gateway(mcpgw_bin, tmp_path, mode) as client:
        await client.list_tools()
        # An error result, a JSON-RPC error for a bad argument, and
        # structured content.
        unset = await client.call_tool("u__env", {"name": "NOT_SET_ANYWHERE"})
        assert unset.is_error and text(unset) == "NOT_SET_ANYWHERE is not set", text(unset)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("u__read_file", {})
        assert "`path` must be a string" in refused.value.message, refused.value.message
        added = await client.call_tool("u__add", {"a": 2, "b": 40})
        assert added.structured_content == {"sum": 42.0} and not added.is_error


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_full_server_queues_a_call_and_refuses_one_beyond_its_queue(mode, mcpgw_bin, tmp_path):
    async with gateway(mcpgw_bin, tmp_path, mode) as client:
        await client.list_tools()
        done = {}

        async def slow(name):
            done[name] = await client.call_tool("q__slow", {"ms": 1500})

        with anyio.fail_after(20):
            async with anyio.create_task_group() as calls:
                # The first takes the one place; the second, sent after it,
                # waits in the one place in the queue.
                calls.start_soon(slow, "first")
                await anyio.sleep(0.3)
                calls.start_soon(slow, "second")
                await anyio.sleep(0.3)
                with pytest.raises(MCPError) as busy:
                    await client.call_tool("q__echo", {"text": "refused"})
                assert "server `q` is busy: 1 calls in flight and 1 waiting" in busy.value.message, busy.value.message
        assert [text(done[name]) for name in ("first", "second")] == ["slept 1500ms"] * 2
        assert text(await client.call_tool("q__echo", {"text": "admitted"})) == "admitted"
