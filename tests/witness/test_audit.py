"""The audit trail (`gateway.audit`), read after real sessions of the
official Python client: over stdio in both eras, and over HTTP with two
tokens (one bound to a profile) at the default path. One record per
request, in order, with the decision and outcome that really happened; no
secret value anywhere in the file, even with the gateway logging at trace
level and arguments recorded; the file private; rotation at its bound; and
a gateway killed with SIGKILL mid-run leaves only whole JSON lines."""

import datetime
import hashlib
import json
import os
import pathlib
import signal
import stat
import subprocess
import time

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from test_http import API, CATALOG as HTTP_CATALOG, Gateway, raw

MODES = ["legacy", "auto"]


def records(path: pathlib.Path) -> list[dict]:
    """Every line of the file, each of which must be whole JSON."""
    lines = path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    for record in parsed:
        assert record["v"] == 1, record
        when = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        assert when.tzinfo is not None and record["time"].endswith("Z"), record
    return parsed


def requests(parsed: list[dict]) -> list[dict]:
    return [r for r in parsed if r["event"] not in ("config", "server_start", "server_exit")]


def canonical_sha256(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_stdio_session_is_recorded_request_by_request(mode, mcpgw_bin, tmp_path):
    audit = tmp_path / "audit.jsonl"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "version: 1\n"
        f"gateway:\n  audit: {{ path: {audit}, arguments: redacted }}\n"
        "servers:\n"
        "  vault:\n"
        "    image: mcpgw/testserver:dev\n"
        "    pull: never\n"
        "    secrets: { API_TOKEN: api.token }\n"
        "    tools: { deny: [crash] }\n"
    )
    params = StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", str(catalog)],
        # A canary: the value is logged nowhere, even at trace level.
        env={"MCPGW_LOG": "trace", "MCPGW_SECRETS": "env", "MCPGW_SECRET_API_TOKEN": API},
    )
    async with Client(params, mode=mode) as client:
        await client.list_tools()
        echoed = await client.call_tool("vault__echo", {"text": f"say {API}"})
        assert "[REDACTED:api.token]" in echoed.content[0].text
        for name in ["vault__crash", "nope__missing"]:
            with pytest.raises(MCPError):
                await client.call_tool(name, {})
        await client.read_resource("test://info")

    assert API not in audit.read_text()
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    parsed = records(audit)
    # First, the configuration in force.
    config = parsed[0]
    assert config["event"] == "config" and config["front"] == "stdio", config
    assert config["catalog"] == str(catalog) and config["servers"] == ["vault"]
    assert config["catalog_sha256"] == hashlib.sha256(catalog.read_bytes()).hexdigest()
    assert [r["server"] for r in parsed if r["event"] == "server_start"] == ["vault"]
    decided = [r for r in requests(parsed) if r["event"] != "list"]
    assert [(r["event"], r.get("exposed"), r["decision"], r.get("outcome")) for r in decided] == [
        ("call", "vault__echo", "allowed", "ok"),
        ("call", "vault__crash", "hidden_by_allowlist", None),
        ("call", "nope__missing", "unknown", None),
        ("read_resource", "test://info", "allowed", "ok"),
    ], decided
    assert any(r["event"] == "list" and r["method"] == "tools/list" for r in parsed)
    echo = decided[0]
    assert echo["client"] == "stdio" and echo["session"] == "stdio"
    assert echo["method"] == "tools/call" and echo["server"] == "vault" and echo["upstream"] == "echo"
    assert echo["protocol_version"] and echo["request_id"] is not None
    assert echo["arguments"] == {"text": "say [REDACTED:api.token]"}
    assert echo["arguments_sha256"] == canonical_sha256({"text": f"say {API}"})
    assert echo["redactions"] >= 2, "the value in the arguments and in the result"
    assert echo["duration_ms"] >= 0 and echo["request_bytes"] > 0 and echo["result_bytes"] > 0
    assert "is not allowed" in decided[1]["error"]
    # In order: each record's time is no earlier than the one before's start.
    times = [r["time"] for r in decided]
    assert times == sorted(times)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_http_records_each_token_and_its_profile_at_the_default_path(mode, mcpgw_bin, tmp_path):
    store = tmp_path / "tokens.json"
    tokens = {}
    for name, profile in [("alice", None), ("bob", "echo-only")]:
        args = [mcpgw_bin, "token", "create", name, "--tokens", str(store)]
        if profile:
            args += ["--profile", profile]
        tokens[name] = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    state = tmp_path / "state"
    gw = Gateway(
        mcpgw_bin, tmp_path, "--auth", "token", "--tokens", str(store),
        env={"XDG_STATE_HOME": str(state)},
        catalog_text=HTTP_CATALOG + 'profiles:\n  echo-only:\n    tools: ["*__echo"]\n',
    )

    def client_for(name):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)

    try:
        async with client_for("alice") as alice, client_for("bob") as bob:
            assert (await alice.call_tool("two__add", {"a": 2, "b": 3})).content[0].text == "5"
            assert (await bob.call_tool("two__echo", {"text": "hi"})).content[0].text == "hi"
            with pytest.raises(Exception):
                await bob.call_tool("two__add", {"a": 1, "b": 1})
        status, _, metrics = raw(f"http://127.0.0.1:{gw.port}/metrics",
                                 headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert status == 200
        assert 'mcpgw_refused_requests_total{reason="outside_profile"} 1' in metrics, metrics
        assert 'mcpgw_server_start_seconds_count{server="two"} 1' in metrics, metrics
    finally:
        log = gw.stop()
    assert API not in log
    audit = state / "mcpgw" / "audit.jsonl"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    parsed = records(audit)
    assert parsed[0]["event"] == "config" and parsed[0]["front"] == "http", parsed[0]
    calls = [r for r in parsed if r["event"] == "call"]
    assert [(r["client"], r.get("profile"), r["exposed"], r["decision"]) for r in calls] == [
        ("alice", None, "two__add", "allowed"),
        ("bob", "echo-only", "two__echo", "allowed"),
        ("bob", "echo-only", "two__add", "outside_profile"),
    ], calls
    assert "arguments" not in calls[0], "arguments are recorded only when the catalog asks"
    assert calls[0]["arguments_sha256"] == canonical_sha256({"a": 2, "b": 3})
    if mode == "legacy":
        assert calls[0]["session"] != "none" and calls[0]["session"] != calls[1]["session"]


def raw_session(proc, calls: int) -> None:
    """A handshake, then `calls` pipelined calls, on the gateway's stdin."""
    send = lambda message: proc.stdin.write(json.dumps(message) + "\n")
    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    for n in range(1, calls + 1):
        send({"jsonrpc": "2.0", "id": n, "method": "tools/call",
              "params": {"name": "t__echo", "arguments": {"text": f"call {n}"}}})
    proc.stdin.flush()


def test_rotation_at_the_bound_and_a_sigkill_leave_only_whole_lines(mcpgw_bin, tmp_path):
    audit = tmp_path / "audit.jsonl"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "version: 1\n"
        f"gateway:\n  audit: {{ path: {audit}, arguments: redacted, max_size: 2k, keep: 3 }}\n"
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    )
    proc = subprocess.Popen([mcpgw_bin, "run", "--catalog", str(catalog)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        raw_session(proc, 400)
        # Killed once some answers are out and others are still coming.
        for _ in range(60):
            proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = [audit] + [pathlib.Path(f"{audit}.{n}") for n in (1, 2, 3)]
    assert all(f.exists() for f in files), "rotated at 2 KiB, three kept"
    assert not pathlib.Path(f"{audit}.4").exists()
    seen = []
    for f in reversed(files):
        assert f.stat().st_size <= 2048, f
        seen += [r for r in records(f) if r["event"] == "call"]
    # Calls run concurrently, so records come in the order calls end.
    ids = [r["request_id"] for r in seen]
    assert len(ids) >= 8 and len(set(ids)) == len(ids) and all(1 <= i <= 400 for i in ids), ids
    # 400 at once are more than the server's 16 in flight and 64 queued:
    # the rest are refused at once, and recorded so.
    for r in seen:
        assert (r["decision"], r.get("outcome")) in [("allowed", "ok"), ("busy", None)], r
        assert r["server"] == "t"
