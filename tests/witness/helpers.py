"""Helpers the witness tests share: the gateway as an stdio server for the
official client, a whole tool list across pages, and a one-shot mcpgw
command."""

import os
import subprocess

from mcp import StdioServerParameters


def gateway(mcpgw_bin: str, path: str) -> StdioServerParameters:
    """`mcpgw run --catalog PATH` as the client starts it."""
    return StdioServerParameters(
        command=mcpgw_bin, args=["run", "--catalog", path], env={"MCPGW_LOG": "warn"}
    )


async def listed(client) -> dict:
    """Every tool the client can list, by name, across pages."""
    tools, cursor = {}, None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.update({t.name: t for t in page.tools})
        cursor = page.next_cursor
        if cursor is None:
            return tools


def mcpgw(mcpgw_bin: str, *args: str) -> subprocess.CompletedProcess:
    """A one-shot mcpgw command, its output captured."""
    return subprocess.run(
        [mcpgw_bin, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "MCPGW_LOG": "warn"},
    )
