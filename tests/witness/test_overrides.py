"""Tool overrides (`tools.rename`, `describe`, `hide_params`), through the
official MCP Python SDK in both protocol eras, against mcpgw's test server:
the client sees the new names, descriptions and schemas; a call to a
renamed tool reaches the server's own tool without the hidden arguments,
even when the client sends them; an override that names no tool is a
warning at start-up; `mcpgw lock` pins the rewrite with the server's own
definition beside it."""

import pathlib

import anyio
import pytest
from mcp import Client, MCPError

from helpers import gateway, listed, mcpgw

DESCRIPTION = "Repeats the text it is given."


def write_catalog(tmp_path: pathlib.Path, extra: str = "") -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\nservers:\n  ts:\n    image: mcpgw/testserver:dev\n    pull: never\n"
        "    tools:\n"
        "      allow: [echo, add]\n"
        "      rename: { add: plus }\n"
        f"      describe: {{ echo: '{DESCRIPTION}'{extra} }}\n"
        "      hide_params: { add: [b], echo: [delay_ms] }\n"
    )
    return str(path)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_overridden_definitions_are_what_the_client_sees_and_calls(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, write_catalog(tmp_path)), mode=mode) as client:
        tools = await listed(client)
        assert set(tools) == {"ts__echo", "ts__plus"}, sorted(tools)
        assert tools["ts__echo"].description == DESCRIPTION
        # `add`'s own description, under its new name, without `b`.
        assert tools["ts__plus"].description.startswith("Adds `a` and `b`")
        assert set(tools["ts__plus"].input_schema["properties"]) == {"a"}
        assert tools["ts__plus"].input_schema["required"] == ["a"]
        assert set(tools["ts__echo"].input_schema["properties"]) == {"text"}

        # The renamed tool reaches the server's `add`, and `b`, hidden, is
        # stripped although the client sends it: the server says it is
        # missing, which it would not have said had it arrived.
        with pytest.raises(MCPError) as err:
            await client.call_tool("ts__plus", {"a": 1, "b": 2})
        assert "`b` must be a number" in err.value.message, err.value.message
        # The old name is not a tool any more.
        with pytest.raises(MCPError) as err:
            await client.call_tool("ts__add", {"a": 1, "b": 2})
        assert "unknown tool `ts__add`" in err.value.message, err.value.message
        # `delay_ms` is stripped too: ten minutes asked, none waited.
        with anyio.fail_after(30):
            echoed = await client.call_tool("ts__echo", {"text": "hi", "delay_ms": 600_000})
        assert echoed.content[0].text == "hi"


def test_an_override_naming_no_tool_is_a_warning_and_the_lock_pins_both(mcpgw_bin, tmp_path):
    path = write_catalog(tmp_path, extra=", ech: 'A typo.'")
    done = mcpgw(mcpgw_bin, "tools", "--catalog", path)
    assert done.returncode == 0, done.stderr
    assert "`tools.describe` names `ech`, which the server does not list" in done.stderr, done.stderr
    assert "ts__plus" in done.stdout and "ts__add" not in done.stdout, done.stdout

    done = mcpgw(mcpgw_bin, "lock", "--catalog", path)
    assert done.returncode == 0, done.stderr
    lock = pathlib.Path(path + ".lock").read_text()
    # Keyed by the server's name; the rewrite pinned, the original beside it.
    assert "    add:\n" in lock, lock
    assert '"name": "plus"' in lock and '"name": "add"' in lock, lock
    assert "upstream:" in lock, lock
    done = mcpgw(mcpgw_bin, "lock", "--check", "--catalog", path)
    assert done.returncode == 0, done.stdout + done.stderr
