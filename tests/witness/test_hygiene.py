"""JSON-RPC hygiene on the gateway's stdio, with raw lines (no SDK): a batch is
refused with -32600, malformed JSON gets -32700 and never ends the session, and request ids
from the client never reach a backend (the gateway numbers its own)."""

import json
import subprocess

import pytest



def exchange(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


@pytest.fixture
def gateway(mcpgw_bin, tmp_path):
    """`mcpgw run` with one test server, driven by raw lines on its stdio;
    it must exit 0 when its stdin closes."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("version: 1\nservers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n")
    proc = subprocess.Popen(
        [mcpgw_bin, "run", "--catalog", str(catalog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    yield proc
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_batches_are_refused_and_garbage_gets_a_parse_error(gateway):
    init = exchange(
        gateway,
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
    )
    assert init["result"]["protocolVersion"] == "2025-11-25"
    gateway.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    batch = exchange(gateway, json.dumps([
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]))
    assert batch["error"]["code"] == -32600, batch
    # Malformed JSON is answered with a parse error (id null, as it
    # cannot be read); the session goes on.
    parse_error = exchange(gateway, "{this is not json")
    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None, parse_error
    # A client id that a backend request of the gateway's own will also
    # use: the gateway renumbers, so the answer is this call's.
    echoed = exchange(gateway, json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tools/call",
                                           "params": {"name": "t__echo", "arguments": {"text": "same id"}}}))
    assert echoed["id"] == 0 and echoed["result"]["content"][0]["text"] == "same id", echoed


def test_a_stateless_client_gets_the_same_answers_before_any_handshake(gateway):
    """A 2026-07-28 client sends no `initialize`: a line that is not JSON
    and a batch get their errors all the same, and the session goes on."""
    parse_error = exchange(gateway, '{"jsonrpc": "2.0", "id": 1, "method": "server/discover"')
    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None, parse_error
    batch = exchange(gateway, json.dumps([{"jsonrpc": "2.0", "id": 2, "method": "server/discover"}]))
    assert batch["error"]["code"] == -32600, batch
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    discover = exchange(gateway, json.dumps(
        {"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": meta}}))
    assert discover["id"] == 3 and "2026-07-28" in json.dumps(discover["result"]), discover
