"""Tool-poisoning scanning, through the official MCP Python SDK in both
protocol eras: poisoned tools of mcpgw's test server are withheld under the
default policy and only flagged under `scan: warn`; a rug pull (a tool whose
description turns poisoned after its first call, announced by
list_changed) never reaches the client; and `mcpgw scan` is the CI job:
exit codes, JSON and SARIF 2.1.0."""

import json
import pathlib

import anyio
import pytest
from mcp import Client, MCPError

from helpers import gateway, listed, mcpgw

POISONED = {"p__poisoned_description", "p__poisoned_schema", "p__tag_characters"}


def catalog(tmp_path: pathlib.Path, scan: str | None) -> str:
    policy = f"    scan: {scan}\n" if scan else ""
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\nservers:\n  p:\n    image: mcpgw/testserver:dev\n    pull: never\n"
        "    env: { MCPGW_TEST_POISONED: '1' }\n"
        "    tools:\n      allow: [echo, poisoned_description, poisoned_schema, tag_characters, rug_pull]\n"
        + policy
    )
    return str(path)




@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_poisoned_tools_are_withheld_and_refused_by_default(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, catalog(tmp_path, None)), mode=mode) as client:
        tools = await listed(client)
        assert not POISONED & tools.keys(), sorted(tools)
        assert {"p__echo", "p__rug_pull"} <= tools.keys(), sorted(tools)
        for name, rule in [("p__poisoned_description", "instruction-tags"), ("p__tag_characters", "unicode-tags")]:
            with pytest.raises(MCPError) as err:
                await client.call_tool(name, {"a": 1, "date": "x"})
            assert "is withheld: the tool-poisoning scan found" in err.value.message, err.value.message
            assert rule in err.value.message, err.value.message
        echoed = await client.call_tool("p__echo", {"text": "clean"})
        assert echoed.content[0].text == "clean"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_under_warn_poisoned_tools_are_served(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, catalog(tmp_path, "warn")), mode=mode) as client:
        tools = await listed(client)
        assert POISONED <= tools.keys(), sorted(tools)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_rug_pull_never_reaches_the_client(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, catalog(tmp_path, None)), mode=mode) as client:
        before = await listed(client)
        assert before["p__rug_pull"].description == "Returns the weather."
        sunny = await client.call_tool("p__rug_pull", {})
        assert sunny.content[0].text == "sunny"
        # The server now describes the tool with hidden instructions and
        # announces the change; the gateway re-reads and rescans its list.
        # Every list the client reads meanwhile has the old description or
        # no such tool, never the new one.
        with anyio.fail_after(20):
            while True:
                tools = await listed(client)
                rug = tools.get("p__rug_pull")
                assert rug is None or rug.description == "Returns the weather.", rug.description
                if rug is None:
                    break
                await anyio.sleep(0.05)
        with pytest.raises(MCPError) as err:
            await client.call_tool("p__rug_pull", {})
        assert "is withheld" in err.value.message, err.value.message


def run_scan(mcpgw_bin: str, path: str, *args: str):
    return mcpgw(mcpgw_bin, "scan", "--catalog", path, *args)


def test_mcpgw_scan_fails_on_poison_and_reports_it_as_json_and_sarif(mcpgw_bin, tmp_path):
    path = catalog(tmp_path, None)
    table = run_scan(mcpgw_bin, path)
    assert table.returncode == 1, table.stderr
    assert "instruction-tags" in table.stdout and "blocked" in table.stdout, table.stdout
    assert "at or above `high`" in table.stderr, table.stderr

    findings = json.loads(run_scan(mcpgw_bin, path, "--format", "json", "--fail-on", "critical").stdout)
    rules = {(f["item"], f["rule"]) for f in findings}
    assert ("poisoned_description", "instruction-tags") in rules, rules
    assert ("poisoned_description", "sensitive-path") in rules, rules
    assert ("tag_characters", "unicode-tags") in rules, rules
    assert any(f["item"] == "poisoned_schema" and "inputSchema" in f["path"] for f in findings), findings
    assert all(f["action"] in ("blocked", "warned") for f in findings)

    sarif = run_scan(mcpgw_bin, path, "--format", "sarif")
    assert sarif.returncode == 1
    document = json.loads(sarif.stdout)
    from sarif_pydantic import Sarif

    parsed = Sarif.model_validate(document)
    assert parsed.version == "2.1.0"
    results = document["runs"][0]["results"]
    assert len(results) == len(findings)
    rule_ids = [r["id"] for r in document["runs"][0]["tool"]["driver"]["rules"]]
    for result in results:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] == 3  # the line of `p:` in the catalog


def test_mcpgw_scan_passes_the_official_reference_servers(mcpgw_bin, tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\nservers:\n"
        "  time:\n    image: mcpgw/python-servers:dev\n    pull: never\n"
        "    entrypoint: ['/opt/mcp/bin/mcp-server-time']\n"
        "  git:\n    image: mcpgw/python-servers:dev\n    pull: never\n"
        "    entrypoint: ['/opt/mcp/bin/mcp-server-git']\n"
    )
    clean = run_scan(mcpgw_bin, str(path), "--fail-on", "info")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout == "no tool-poisoning findings\n", clean.stdout
