"""Pinning: `mcpgw lock` and its lockfile, through the official MCP Python
SDK in both protocol eras. A rug pull (mcpgw's test server changes a tool's
description after its first call and announces it with list_changed) never
reaches the client while the lockfile pins the old definition, even with
the scan off; a tool the lockfile does not list is withheld; an image
whose digest differs from its pin stops that server only; and the
lock, --check, --update round trip that CI runs."""

import pathlib
import re

import anyio
import pytest
from mcp import Client, MCPError

from helpers import gateway, listed, mcpgw

WEATHER = "Returns the weather."


def write_catalog(tmp_path: pathlib.Path, allow: list[str], time_image: str = "mcpgw/python-servers:dev") -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\n"
        "gateway:\n  init_timeout: 60s\n"
        "servers:\n"
        "  p:\n"
        "    image: mcpgw/testserver:dev\n"
        "    pull: never\n"
        "    env: { MCPGW_TEST_POISONED: '1' }\n"
        # The scan would withhold the rug pull by itself; off, the lockfile
        # alone must.
        "    scan: off\n"
        f"    tools:\n      allow: [{', '.join(allow)}]\n"
        "  t:\n"
        f"    image: '{time_image}'\n"
        "    pull: never\n"
        '    entrypoint: ["/opt/mcp/bin/mcp-server-time"]\n'
        '    command: ["--local-timezone", "UTC"]\n'
        "    tools:\n      allow: [get_current_time]\n"
    )
    return str(path)





def locked(mcpgw_bin: str, path: str) -> str:
    done = mcpgw(mcpgw_bin, "lock", "--catalog", path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout, done.stdout
    return pathlib.Path(path + ".lock").read_text()


def test_lock_check_and_update_round_trip(mcpgw_bin, tmp_path):
    path = write_catalog(tmp_path, ["echo", "rug_pull"])
    text = locked(mcpgw_bin, path)
    # Reviewable: each server's image digest, each exposed tool's pin with
    # its definition, and nothing the allowlist hides.
    images = re.findall(r"^    image: (sha256:[0-9a-f]{64})$", text, re.M)
    assert len(images) == 2 and images[0] != images[1], text
    for tool in ["echo:", "rug_pull:", "get_current_time:"]:
        assert f"      {tool}\n        sha256: " in text, text
    assert "poisoned_description" not in text
    assert WEATHER in text

    check = mcpgw(mcpgw_bin, "lock", "--catalog", path, "--check")
    assert check.returncode == 0, check.stderr
    assert "match their pins" in check.stdout

    # The catalog now exposes one more tool: drift, reported, not written.
    path = write_catalog(tmp_path, ["echo", "rug_pull", "poisoned_schema"])
    check = mcpgw(mcpgw_bin, "lock", "--catalog", path, "--check")
    assert check.returncode == 1, (check.stdout, check.stderr)
    assert "tool `poisoned_schema` of server `p`: new, not pinned" in check.stdout, check.stdout
    assert "1 difference(s)" in check.stderr, check.stderr
    assert pathlib.Path(path + ".lock").read_text() == text

    create = mcpgw(mcpgw_bin, "lock", "--catalog", path)
    assert create.returncode == 1, create.stdout
    assert "mcpgw lock --update" in create.stderr, create.stderr
    assert pathlib.Path(path + ".lock").read_text() == text

    update = mcpgw(mcpgw_bin, "lock", "--catalog", path, "--update")
    assert update.returncode == 0, update.stderr
    assert "tool `poisoned_schema` of server `p`: new, not pinned" in update.stdout, update.stdout
    assert "wrote" in update.stdout
    assert mcpgw(mcpgw_bin, "lock", "--catalog", path, "--check").returncode == 0

    # A pin edited by hand is refused before anything starts.
    lock_path = pathlib.Path(path + ".lock")
    lock_path.write_text(lock_path.read_text().replace(WEATHER, "Returns the weather, honestly."))
    refused = mcpgw(mcpgw_bin, "validate", "--catalog", path)
    assert refused.returncode != 0, refused.stdout
    assert "edited by hand" in refused.stderr and "catalog.yaml.lock" in refused.stderr, refused.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_lockfile_keeps_a_rug_pull_and_unpinned_tools_from_the_client(mode, mcpgw_bin, tmp_path):
    locked(mcpgw_bin, write_catalog(tmp_path, ["echo", "rug_pull"]))
    # Exposed after locking: not pinned, so withheld.
    path = write_catalog(tmp_path, ["echo", "rug_pull", "poisoned_schema"])
    async with Client(gateway(mcpgw_bin, path), mode=mode) as client:
        before = await listed(client)
        assert {"p__echo", "p__rug_pull", "t__get_current_time"} <= before.keys(), sorted(before)
        assert "p__poisoned_schema" not in before
        with pytest.raises(MCPError) as err:
            await client.call_tool("p__poisoned_schema", {"date": "x"})
        assert "is withheld" in err.value.message and "is not in the lockfile" in err.value.message, err.value.message

        assert before["p__rug_pull"].description == WEATHER
        sunny = await client.call_tool("p__rug_pull", {})
        assert sunny.content[0].text == "sunny"
        # The server now describes the tool otherwise and announces it. Every
        # list the client reads has the pinned description or no such tool.
        with anyio.fail_after(20):
            while True:
                tools = await listed(client)
                rug = tools.get("p__rug_pull")
                assert rug is None or rug.description == WEATHER, rug.description
                if rug is None:
                    break
                await anyio.sleep(0.05)
        with pytest.raises(MCPError) as err:
            await client.call_tool("p__rug_pull", {})
        assert "differs from its pin in the lockfile" in err.value.message, err.value.message
        echoed = await client.call_tool("p__echo", {"text": "still here"})
        assert echoed.content[0].text == "still here"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_image_that_is_not_the_pinned_one_stops_that_server_only(mode, mcpgw_bin, tmp_path):
    path = write_catalog(tmp_path, ["echo"])
    text = locked(mcpgw_bin, path)
    images = re.findall(r"^    image: (sha256:[0-9a-f]{64})$", text, re.M)
    # Servers sort by name: p (the test server), then t (the time server).
    p_image, t_image = images
    # The time server's pin now names the test server's image: as if its
    # tag had moved to another build.
    lock_path = pathlib.Path(path + ".lock")
    lock_path.write_text(text.replace(f"image: {t_image}", f"image: {p_image}"))
    async with Client(gateway(mcpgw_bin, path), mode=mode) as client:
        tools = await listed(client)
        assert "p__echo" in tools and not any(n.startswith("t__") for n in tools), sorted(tools)
        with pytest.raises(MCPError) as err:
            await client.call_tool("t__get_current_time", {"timezone": "UTC"})
        assert f"not the pinned {p_image}" in err.value.message, err.value.message
        echoed = await client.call_tool("p__echo", {"text": "served"})
        assert echoed.content[0].text == "served"

    # Pinned in the catalog instead (`NAME@sha256:`), the right digest
    # serves, a locally built image included.
    lock_path.unlink()
    path = write_catalog(tmp_path, ["echo"], time_image=f"mcpgw/python-servers:dev@{t_image}")
    async with Client(gateway(mcpgw_bin, path), mode=mode) as client:
        now = await client.call_tool("t__get_current_time", {"timezone": "UTC"})
        assert not now.is_error and "UTC" in now.content[0].text, now
