"""Secrets through the official Python client, in both eras: a value
injected from the environment reaches the container, and nothing the client
receives (results, structured content, embedded resources, errors, progress
and log notifications) carries it; it sees `[REDACTED:<name>]` instead."""

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters

MODES = ["legacy", "auto"]
API = "api-Zx81-Qm4r-Lp20-value"
CATALOG = """version: 1
servers:
  vault:
    image: mcpgw/testserver:dev
    pull: never
    secrets: { API_TOKEN: api.token }
  other:
    image: mcpgw/testserver:dev
    pull: never
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_client_sees_redactions_never_values(mode, mcpgw_bin, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    received = []

    async def on_progress(progress, total, message):
        received.append(("progress", message))

    async def on_log(params):
        received.append(("log", params.data))

    params = StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", str(catalog)],
        env={"MCPGW_LOG": "warn", "MCPGW_SECRETS": "env", "MCPGW_SECRET_API_TOKEN": API},
    )
    async with Client(params, mode=mode, logging_callback=on_log) as client:
        if mode == "legacy":
            await client.set_logging_level("debug")
        assert text(await client.call_tool("vault__env", {"name": "API_TOKEN"})) == "[REDACTED:api.token]"
        missing = await client.call_tool("other__env", {"name": "API_TOKEN"})
        assert missing.is_error, "a server receives only the secrets it declares"

        leaked = await client.call_tool("vault__leak", {"name": "API_TOKEN"}, progress_callback=on_progress)
        dump = leaked.model_dump_json()
        for said in ["text says", "hex says", "resource says"]:
            assert f"{said} [REDACTED:api.token]" in dump, dump
        assert leaked.structured_content == {"value": "[REDACTED:api.token]"}

        with pytest.raises(MCPError) as error:
            await client.call_tool("vault__leak", {"name": "API_TOKEN", "as_error": True})
        assert "error says [REDACTED:api.token]" in str(error.value)

        with pytest.raises(MCPError) as refused:
            await client.call_tool("other__echo", {"text": API})
        assert "server `other` is not given" in str(refused.value)

        with anyio.fail_after(5):
            while not any(kind == "progress" for kind, _ in received):
                await anyio.sleep(0.05)
        if mode == "legacy":
            with anyio.fail_after(5):
                while not any(kind == "log" for kind, _ in received):
                    await anyio.sleep(0.05)

    assert ("progress", "progress says [REDACTED:api.token]") in received, received
    if mode == "legacy":
        assert ("log", "log says [REDACTED:api.token]") in received, received
    for seen in [dump, repr(received), str(error.value), str(refused.value)]:
        assert API not in seen
