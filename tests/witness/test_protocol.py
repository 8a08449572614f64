"""Protocol fidelity through `mcpgw run`, driven by the official Python MCP
SDK in both eras: pagination, field-by-field listings, progress,
cancellation, completion and resource templates."""

import os
import pathlib

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp_types import PromptReference, ResourceTemplateReference

HERE = pathlib.Path(__file__).resolve().parent
MODES = ["legacy", "auto"]


def gateway(mcpgw_bin, mode, **options):
    params = StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", str(HERE / "protocol.yaml")],
        env={"MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn")},
    )
    return Client(params, mode=mode, **options)


def direct(image_args, mode):
    """The same server, run straight from its image, with no gateway."""
    params = StdioServerParameters(command="docker", args=["run", "-i", "--rm", "--network", "none", *image_args])
    return Client(params, mode=mode)


async def all_tools(client):
    tools, cursor, pages = [], None, 0
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return tools, pages


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_lists_are_paged_with_the_gateways_own_cursors(mode, mcpgw_bin):
    async with gateway(mcpgw_bin, mode) as client:
        tools, pages = await all_tools(client)
        names = [t.name for t in tools]
        generated = [n for n in names if n.startswith("testserver__tool_")]
        assert len(generated) == 300, len(generated)
        assert len(names) == len(set(names)), "no tool twice"
        assert pages >= 4, f"{len(names)} tools in {pages} pages"
        again, _ = await all_tools(client)
        assert [t.name for t in again] == names, "a stable order"
        with pytest.raises(MCPError) as err:
            await client.list_tools(cursor="not-a-cursor-we-issued")
        assert err.value.code == -32602


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "server,image_args",
    [
        ("testserver", ["-e", "MCPGW_TEST_TOOLS=300", "mcpgw/testserver:dev"]),
        ("time", ["--entrypoint", "/opt/mcp/bin/mcp-server-time", "mcpgw/python-servers:dev", "--local-timezone", "UTC"]),
    ],
)
async def test_listings_match_the_backends_own_field_by_field(mode, server, image_args, mcpgw_bin):
    async with direct(image_args, mode) as backend:
        own, _ = await all_tools(backend)
    async with gateway(mcpgw_bin, mode) as client:
        listed, _ = await all_tools(client)
    through = {t.name: t for t in listed}
    assert own, "the backend lists tools"
    for tool in own:
        mine = through[f"{server}__{tool.name}"]
        expected = tool.model_dump(by_alias=True, exclude_none=True)
        got = mine.model_dump(by_alias=True, exclude_none=True)
        expected.pop("name")
        got.pop("name")
        assert got == expected, tool.name
    if server == "testserver":
        add = through["testserver__add"]
        assert add.title == "Add two numbers"
        assert add.output_schema["properties"]["sum"] == {"type": "number"}
        assert add.annotations.read_only_hint is True
        assert add.icons[0].src == "https://example.invalid/add.svg"
        assert add.meta == {"io.mcpgw.test/kind": "math"}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_client_in_order(mode, mcpgw_bin):
    reports = []

    async def on_progress(progress, total, message):
        reports.append((progress, total))

    async with gateway(mcpgw_bin, mode) as client:
        result = await client.call_tool(
            "testserver__slow", {"ms": 600, "steps": 6}, progress_callback=on_progress
        )
        assert text(result) == "slept 600ms"
        await anyio.sleep(0.2)
    assert reports, "no progress reached the client"
    progress = [p for p, _ in reports]
    assert progress == sorted(progress) and len(set(progress)) == len(progress), progress
    assert all(total == 6 for _, total in reports), reports
    assert progress[-1] <= 6


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_cancellation_reaches_the_backend(mode, mcpgw_bin):
    async with gateway(mcpgw_bin, mode) as client:
        # Listing waits for every backend, so the call below reaches the
        # backend before it is cancelled (one cancelled earlier is never sent).
        await client.list_tools()
        with pytest.raises(MCPError):
            await client.call_tool("testserver__hang", {}, read_timeout_seconds=1)
        for _ in range(50):
            stats = await client.call_tool("testserver__stats", {})
            if stats.structured_content.get("hang_cancelled") == 1:
                break
            await anyio.sleep(0.1)
        assert stats.structured_content.get("hang_cancelled") == 1, stats.structured_content
        assert stats.structured_content.get("hang") == 1, "the call reached the backend once"
        echo = await client.call_tool("testserver__echo", {"text": "still serving"})
        assert text(echo) == "still serving"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_completion_and_templates_are_routed(mode, mcpgw_bin):
    async with gateway(mcpgw_bin, mode) as client:
        names = await client.complete(PromptReference(name="testserver__greet"), {"name": "name", "value": "al"})
        assert sorted(names.completion.values) == ["albert", "alice"]
        ids = await client.complete(ResourceTemplateReference(uri="test://items/{id}"), {"name": "id", "value": "1"})
        assert sorted(ids.completion.values) == ["1", "12"]
        templates = (await client.list_resource_templates()).resource_templates
        assert "test://items/{id}" in [t.uri_template for t in templates]
        item = await client.read_resource("test://items/42")
        assert item.contents[0].text == "item 42"
        with pytest.raises(MCPError) as err:
            await client.complete(PromptReference(name="nobody__nothing"), {"name": "x", "value": ""})
        assert err.value.code == -32602


def method_of(message):
    return getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["testserver", "old"])
async def test_a_tool_added_at_run_time_reaches_the_client(mode, backend, mcpgw_bin):
    """`testserver` speaks 2026-07-28 to the gateway (changes on its listen
    stream), `old` the handshake era (changes by notification)."""
    notices = []

    async def on_message(message):
        if method_of(message) == "notifications/tools/list_changed":
            notices.append(message)

    name = f"fresh_{mode}"
    async with gateway(mcpgw_bin, mode, message_handler=on_message) as client:
        tools, _ = await all_tools(client)
        assert f"{backend}__{name}" not in {t.name for t in tools}
        if mode == "legacy":
            added = await client.call_tool(f"{backend}__add_tool", {"name": name})
            assert text(added) == f"added {name}"
            with anyio.fail_after(10):
                while not notices:
                    await anyio.sleep(0.05)
        else:
            async with client.listen(tools_list_changed=True) as changes:
                added = await client.call_tool(f"{backend}__add_tool", {"name": name})
                assert text(added) == f"added {name}"
                with anyio.fail_after(10):
                    await changes.__anext__()
        tools, _ = await all_tools(client)
        assert f"{backend}__{name}" in {t.name for t in tools}
        fresh = await client.call_tool(f"{backend}__{name}", {})
        assert text(fresh) == name


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_server_requests_are_relayed_to_the_client(mode, mcpgw_bin):
    """Handshake-era clients are asked directly, during the call; a
    2026-07-28 client gets an input-required result, answers it, and
    retries with the gateway's sealed requestState (SEP-2322)."""
    from mcp_types import CreateMessageResult, ElicitResult, ListRootsResult, Root, TextContent

    asked = []

    async def sampling(context, params):
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="forty-two"), model="witness-model", stop_reason="endTurn"
        )

    async def elicitation(context, params):
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(context):
        return ListRootsResult(roots=[Root(uri="file:///workspace", name="workspace")])

    async with gateway(
        mcpgw_bin, mode, sampling_callback=sampling, elicitation_callback=elicitation, list_roots_callback=roots
    ) as client:
        answer = await client.call_tool("sampler__sample", {"prompt": "the meaning of life?"})
        assert not answer.is_error, text(answer)
        assert "forty-two" in text(answer) and "witness-model" in text(answer)
        assert asked == ["the meaning of life?"]
        elicited = await client.call_tool("old__elicit", {"message": "Who are you?"})
        assert not elicited.is_error and "Ada" in text(elicited), text(elicited)
        listed = await client.call_tool("old__roots", {})
        assert not listed.is_error and "file:///workspace" in text(listed), text(listed)
        # Sampling is off unless the catalog enables it for the server.
        refused = await client.call_tool("old__sample", {"prompt": "spend my budget"})
        assert refused.is_error and "sampling is not enabled for server `old`" in text(refused), text(refused)
        assert asked == ["the meaning of life?"], "the refused request never reached the client"


@pytest.mark.anyio
async def test_a_2026_client_without_the_capability_gets_a_clear_error(mcpgw_bin):
    async with gateway(mcpgw_bin, "auto") as client:
        answer = await client.call_tool("sampler__sample", {"prompt": "x"})
        assert answer.is_error and "did not declare the capability" in text(answer), text(answer)


@pytest.mark.anyio
async def test_backend_logs_reach_a_handshake_era_client_at_its_level(mcpgw_bin):
    logs = []

    async def on_log(params):
        logs.append((params.level, params.logger, params.data))

    async with gateway(mcpgw_bin, "legacy", logging_callback=on_log) as client:
        await client.list_tools()
        await client.call_tool("old__log", {"level": "error", "message": "before any setLevel"})
        await client.set_logging_level("warning")
        await client.call_tool("old__log", {"level": "info", "message": "below the level"})
        await client.call_tool("old__log", {"level": "error", "message": "at or above"})
        with anyio.fail_after(5):
            while not logs:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
    assert logs == [("error", "old/testserver", "at or above")], logs


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_era", ["2026-07-28", "handshake"])
async def test_resource_subscriptions_deliver_updates_to_subscribers(mode, backend_era, mcpgw_bin, tmp_path):
    env = '    env: { MCPGW_TEST_LEGACY: "1" }\n' if backend_era == "handshake" else ""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"version: 1\nservers:\n  res:\n    image: mcpgw/testserver:dev\n    pull: never\n{env}")
    updates = []

    async def on_message(message):
        if method_of(message) == "notifications/resources/updated":
            updates.append(message)

    params = StdioServerParameters(
        command=mcpgw_bin, args=["run", "--catalog", str(catalog)], env={"MCPGW_LOG": "warn"}
    )
    async with Client(params, mode=mode, message_handler=on_message) as client:
        await client.list_resources()
        if mode == "legacy":
            await client.subscribe_resource("test://info")
            await client.call_tool("res__touch", {"uri": "test://elsewhere"})
            await client.call_tool("res__touch", {"uri": "test://info"})
            with anyio.fail_after(10):
                while not updates:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)
            assert len(updates) == 1, "only the subscribed URI"
            await client.unsubscribe_resource("test://info")
            await client.call_tool("res__touch", {"uri": "test://info"})
            await anyio.sleep(0.5)
            assert len(updates) == 1, "nothing after unsubscribing"
        else:
            async with client.listen(resource_subscriptions=["test://info"]) as stream:
                await client.call_tool("res__touch", {"uri": "test://elsewhere"})
                await client.call_tool("res__touch", {"uri": "test://info"})
                with anyio.fail_after(10):
                    event = await stream.__anext__()
                assert "test://info" in repr(event), event
        if backend_era == "handshake":
            stats = (await client.call_tool("res__stats", {})).structured_content
            assert stats.get("subscribe") == 1, stats
