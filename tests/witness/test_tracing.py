"""OpenTelemetry traces, received by a real OTLP receiver (`otlp.py`, the
official `opentelemetry-proto` messages over OTLP/HTTP and OTLP/gRPC),
after sessions of the official Python client in both eras, over stdio and
HTTP: a call makes the client-request span and the backend span in one
trace with the MCP semantic conventions' attributes; the client's
`traceparent` (in `_meta`, or in the HTTP headers) is continued; the
`traceparent` mcpgw sends reaches the server (the test server echoes its
`_meta`); a refused call's span says why; the audit record carries the trace
id; and with tracing off nothing is sent."""

import json
import secrets

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from otlp import Receiver
from test_http import Gateway

MODES = ["legacy", "auto"]

CATALOG = (
    "version: 1\n"
    "{gateway}"
    "servers:\n"
    "  t:\n"
    "    image: mcpgw/testserver:dev\n"
    "    pull: never\n"
    "    tools: {{ deny: [crash] }}\n"
)


def traceparent() -> tuple[str, str, str]:
    trace, span = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace}-{span}-01", trace, span


def stdio(mcpgw_bin, tmp_path, gateway="", env=None) -> StdioServerParameters:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG.format(gateway=gateway))
    return StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", str(catalog)],
        env={"MCPGW_LOG": "warn", "OTEL_BSP_SCHEDULE_DELAY": "100", **(env or {})},
    )


def named(spans, name):
    return [s for s in spans if s["name"] == name]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_stdio_call_is_one_trace_from_client_to_server(mode, mcpgw_bin, tmp_path):
    receiver = Receiver()
    audit = tmp_path / "audit.jsonl"
    params = stdio(
        mcpgw_bin, tmp_path,
        gateway=f"gateway:\n  audit: {{ path: {audit} }}\n",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "mcpgw-test"},
    )
    header, trace, parent = traceparent()
    try:
        async with Client(params, mode=mode) as client:
            echoed = await client.call_tool("t__meta", {}, meta={"traceparent": header})
            with pytest.raises(MCPError):
                await client.call_tool("t__crash", {})
            await client.call_tool("t__echo", {"text": "untraced"})
        spans = receiver.wait_for(
            lambda s: named(s, "tools/call meta") and named(s, "tools/call t__crash") and named(s, "tools/call t__echo")
        )
    finally:
        receiver.close()

    [request] = [s for s in named(spans, "tools/call t__meta")]
    [backend] = named(spans, "tools/call meta")
    # The client's trace, continued; the backend span its child.
    assert request["kind"] == "server" and request["trace_id"] == trace and request["parent"] == parent
    assert backend["kind"] == "client" and backend["trace_id"] == trace
    assert backend["parent"] == request["span_id"]
    a = request["attributes"]
    assert a["mcp.method.name"] == "tools/call"
    assert a["gen_ai.operation.name"] == "execute_tool" and a["gen_ai.tool.name"] == "t__meta"
    assert a["mcp.server.name"] == "t" and a["network.transport"] == "pipe"
    assert a["mcp.protocol.version"] and a["jsonrpc.request.id"]
    assert "error.type" not in a and request["status"] != 2
    b = backend["attributes"]
    assert b["mcp.method.name"] == "tools/call" and b["gen_ai.tool.name"] == "meta"
    assert b["mcp.server.name"] == "t"
    assert request["resource"]["service.name"] == "mcpgw-test"
    # What reached the server: the backend span's own context.
    sent = echoed.structured_content
    assert sent["traceparent"] == f"00-{trace}-{backend['span_id']}-01", sent

    # A refused call: its span says why, and nothing was forwarded.
    [refused] = named(spans, "tools/call t__crash")
    assert refused["attributes"]["error.type"] == "hidden_by_allowlist" and refused["status"] == 2
    assert not named(spans, "tools/call crash")
    # A call without a traceparent starts a trace of its own.
    [fresh] = named(spans, "tools/call t__echo")
    assert fresh["trace_id"] != trace and fresh["parent"] == ""

    # The container's start is traced too, under the server's start.
    [start] = [s for s in spans if s["name"] == "mcpgw.server.start"]
    for step in ["container.create", "container.start", "image.ensure"]:
        assert any(s["name"] == step and s["trace_id"] == start["trace_id"] for s in spans), step

    # The audit record of the call names its trace.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    [call] = [r for r in records if r.get("exposed") == "t__meta"]
    assert call["trace_id"] == trace


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_http_exports_over_grpc_and_continues_the_header_traceparent(mode, mcpgw_bin, tmp_path):
    receiver = Receiver("grpc")
    header, trace, parent = traceparent()
    gw = Gateway(
        mcpgw_bin, tmp_path,
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        catalog_text=CATALOG.format(
            gateway=f"gateway:\n  tracing: {{ endpoint: \"{receiver.url}\", protocol: grpc, service_name: edge }}\n"
        ),
    )
    try:
        http_client = httpx2.AsyncClient(headers={"traceparent": header}, timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(gw.url, http_client=http_client), mode=mode) as client:
            echoed = await client.call_tool("t__meta", {})
        spans = receiver.wait_for(lambda s: named(s, "tools/call meta"))
    finally:
        gw.stop()
        receiver.close()
    [request] = named(spans, "tools/call t__meta")
    [backend] = named(spans, "tools/call meta")
    assert request["trace_id"] == trace and request["parent"] == parent
    assert request["attributes"]["network.transport"] == "tcp"
    if mode == "legacy":
        assert request["attributes"]["mcp.session.id"]
    assert backend["parent"] == request["span_id"]
    assert request["resource"]["service.name"] == "edge"
    assert echoed.structured_content["traceparent"] == f"00-{trace}-{backend['span_id']}-01"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_with_tracing_off_nothing_is_sent_and_the_client_context_passes_through(mode, mcpgw_bin, tmp_path):
    receiver = Receiver()
    header = traceparent()[0]
    try:
        # `tracing: off` wins over the environment's endpoint.
        params = stdio(mcpgw_bin, tmp_path, gateway="gateway:\n  tracing: off\n",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        async with Client(params, mode=mode) as client:
            echoed = await client.call_tool("t__meta", {}, meta={"traceparent": header, "other": "kept back"})
    finally:
        receiver.close()
    assert receiver.requests == 0 and receiver.spans == []
    # A gateway that does not trace is transparent to the client's trace:
    # its context reaches the server unchanged; nothing else of `_meta` does.
    sent = echoed.structured_content
    assert sent.get("traceparent") == header and "other" not in sent, sent
