"""A real backend: scripts/sdk-server.py, a server written with the official
Python SDK (mcp==2.3.0) and shipped in `mcpgw/python-servers:dev` as
`/opt/mcp/bin/python /opt/sdk/server.py`.

First the server alone, spoken to by the official client in both eras with
no gateway: it asks for elicitation, sampling and roots (mid-call requests
in the handshake era, an `InputRequiredResult` in `2026-07-28`), reports
progress and sends log messages. That proves the backend; everything after
it goes through mcpgw, over stdio and Streamable HTTP, in both eras: the
server's questions reach the client that made the call and its answers come
back; every progress report arrives, in order, before the answer; a client
that is slow to read still gets every answer once and intact; and log
messages go only to the session whose call made them."""

import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import pathlib
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CreateMessageResult, ElicitResult, ListRootsResult, Root, TextContent

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "mcpgw/python-servers:dev"
SERVER = ["/opt/mcp/bin/python", "/opt/sdk/server.py"]
MODES = ["legacy", "auto"]
TRANSPORTS = ["stdio", "http"]

# The server's own module, for the exact text its `big` tool returns.
_spec = importlib.util.spec_from_file_location("sdk_server", ROOT / "scripts" / "sdk-server.py")
sdk_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sdk_server)

SDK = f"""  sdk:
    image: {IMAGE}
    pull: never
    entrypoint: {json.dumps(SERVER)}
    relay: {{ sampling: true, elicitation: true, roots: true }}
    concurrency: {{ in_flight: 64, queue: 1024 }}
"""
CATALOG = f"""version: 1
gateway:
  init_timeout: 60s
servers:
{SDK}"""
PROFILES = f"""version: 1
gateway:
  init_timeout: 60s
servers:
{SDK}  other:
    image: mcpgw/testserver:dev
    pull: never
profiles:
  sdk-only:
    tools: ["sdk__*"]
  other-only:
    tools: ["other__*"]
"""


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


# ---- the client's side of the server's questions --------------------------

async def elicitation(context, params):
    assert params.message == "What is your name?", params.message
    assert list(params.requested_schema["properties"]) == ["name"], params.requested_schema
    return ElicitResult(action="accept", content={"name": "Ada"})


async def sampling(context, params):
    prompt = params.messages[0].content.text
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"the model read: {prompt}"),
                               model="witness-model", stop_reason="endTurn")


async def roots(context):
    return ListRootsResult(roots=[Root(uri="file:///work")])


CALLBACKS = dict(elicitation_callback=elicitation, sampling_callback=sampling, list_roots_callback=roots)

# (tool, arguments, expected answer) for each kind of question.
QUESTIONS = {
    "elicitation": ("ask_name", {}, "hello Ada"),
    "sampling": ("summarize", {"text": "a gateway relays"}, "the model read: Summarize: a gateway relays"),
    "roots": ("list_roots", {}, "file:///work"),
}


class Logs:
    """The log messages a client receives (`logging_callback`)."""

    def __init__(self):
        self.lines = []

    async def __call__(self, params):
        self.lines.append(params.data)

    async def wait_for(self, count, timeout=30):
        """Until `count` have come, or `timeout` seconds (the caller checks)."""
        with anyio.move_on_after(timeout):
            while len(self.lines) < count:
                await anyio.sleep(0.05)


async def counted(client, tool, n):
    """Calls `tool` (which reports progress 1..n of n), and returns its answer
    and the reports the client took before it. The client drops a report that
    arrives after its answer (the call is no longer pending), and it runs
    each one it takes on a task of its own, so a moment after the answer
    every one it took has been recorded."""
    reports = []

    async def progress(value, total, message):
        reports.append((value, total))

    result = await client.call_tool(tool, {"n": n}, progress_callback=progress)
    await anyio.sleep(0.5)
    return result, reports


def check_progress(result, reports, n):
    assert text(result) == f"counted {n}", text(result)
    values = [value for value, _ in reports]
    assert len(values) == n, f"{len(values)} of {n} reports before the answer; missing {sorted(set(range(1, n + 1)) - set(values))[:10]}"
    assert all(a < b for a, b in zip(values, values[1:])), f"reports out of order: {values}"
    assert values == list(range(1, n + 1)) and {total for _, total in reports} == {n}, reports


# ---- a) the server alone ---------------------------------------------------

def direct(mode, **options):
    params = StdioServerParameters(
        command="docker",
        args=["run", "-i", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
              "--user", "65534:65534", IMAGE, *SERVER],
    )
    return Client(params, mode=mode, **options)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_server_alone_asks_reports_and_logs(mode):
    logs = Logs()
    with anyio.fail_after(120):
        async with direct(mode, **CALLBACKS, logging_callback=logs, log_level="info") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"echo", "big", "ask_name", "summarize", "list_roots", "count", "chatter"}, names
            assert text(await client.call_tool("echo", {"text": "straight"})) == "straight"
            big = text(await client.call_tool("big", {"kib": 3}))
            assert len(big) == 3 * 1024 and big == sdk_server.big_text(3)
            for tool, arguments, expected in QUESTIONS.values():
                assert text(await client.call_tool(tool, arguments)) == expected, tool
            check_progress(*await counted(client, "count", 50), 50)
            assert text(await client.call_tool("chatter", {"n": 5})) == "chattered 5"
            await logs.wait_for(5)
            assert logs.lines == [f"line {i}" for i in range(1, 6)], logs.lines


# ---- b) through mcpgw --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpGateway:
    """`mcpgw run --transport http` on a free loopback port, ready."""

    def __init__(self, mcpgw_bin, tmp_path, catalog_text, *extra):
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(catalog_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log_path = tmp_path / "gateway-http.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [mcpgw_bin, "run", "--catalog", str(catalog), "--transport", "http",
             "--listen", f"127.0.0.1:{self.port}", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, "MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn"), "NO_COLOR": "1"},
        )
        deadline = time.monotonic() + 90
        while not self.ready():
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "the HTTP gateway did not become ready"
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.log_path.read_text()


@contextlib.asynccontextmanager
async def through(transport, mode, mcpgw_bin, tmp_path, catalog_text=CATALOG, **options):
    """The official client, connected to mcpgw over `transport`."""
    if transport == "stdio":
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(catalog_text)
        params = StdioServerParameters(command=mcpgw_bin, args=["run", "--catalog", str(catalog)],
                                       env={"MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn")})
        async with Client(params, mode=mode, **options) as client:
            yield client
        return
    gateway = HttpGateway(mcpgw_bin, tmp_path, catalog_text)
    try:
        async with Client(gateway.url, mode=mode, **options) as client:
            yield client
    finally:
        gateway.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("question", list(QUESTIONS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_servers_questions_reach_the_client_and_its_answers_come_back(transport, mode, question,
                                                                                  mcpgw_bin, tmp_path):
    """A handshake-era client is asked mid-call, a 2026-07-28 client gets an
    input-required result; either way the tool's answer is the one the
    client's callback made."""
    tool, arguments, expected = QUESTIONS[question]
    with anyio.fail_after(120):
        async with through(transport, mode, mcpgw_bin, tmp_path, **CALLBACKS) as client:
            answer = await client.call_tool(f"sdk__{tool}", arguments)
            assert not answer.is_error and text(answer) == expected, text(answer)
            # And again: a question is asked afresh for each call.
            assert text(await client.call_tool(f"sdk__{tool}", arguments)) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_progress_report_arrives_in_order_before_the_answer(transport, mode, mcpgw_bin, tmp_path):
    with anyio.fail_after(120):
        async with through(transport, mode, mcpgw_bin, tmp_path) as client:
            check_progress(*await counted(client, "sdk__count", 200), 200)
            # A second call's reports are its own.
            check_progress(*await counted(client, "sdk__count", 200), 200)


# ---- slow readers: every answer once, intact ----------------------------------

CALLS = 300
KIB = 48


def big_call(request_id, meta=None) -> dict:
    params = {"name": "sdk__big", "arguments": {"kib": KIB}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def check_answers(answers: dict, counts: collections.Counter):
    """Every call answered exactly once, each with the whole text."""
    expected_ids = set(range(1, CALLS + 1))
    assert set(counts) == expected_ids, f"unanswered {sorted(expected_ids - set(counts))[:20]}, unknown {sorted(set(counts) - expected_ids)[:20]}"
    twice = {i: n for i, n in counts.items() if n != 1}
    assert not twice, f"answered more than once: {twice}"
    want = sdk_server.big_text(KIB)
    for request_id, answer in sorted(answers.items()):
        assert "result" in answer, f"call {request_id}: {json.dumps(answer)[:300]}"
        result = answer["result"]
        got = "".join(c["text"] for c in result["content"] if c["type"] == "text")
        assert not result.get("isError") and len(got) == KIB * 1024, f"call {request_id}: {len(got)} characters"
        assert got == want, f"call {request_id}: the text differs"


class Lines:
    """JSON-RPC messages read from a pipe, with deadlines."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buffer = b""

    def next(self, deadline, waiting_for="a message") -> dict:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"the gateway sent nothing more in time, while waiting for {waiting_for}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                assert chunk, "the gateway closed its stdout"
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def answer(self, request_id, timeout) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(deadline)
            if message.get("id") == request_id and "method" not in message:
                return message


def test_a_slow_reading_stdio_client_gets_every_answer_once_and_intact(mcpgw_bin, tmp_path):
    """A handshake-era client pipelines 300 calls for 48 KiB each and reads
    nothing for 3 s: the gateway must neither lose nor repeat nor cut an
    answer while the client's pipe is full."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    log = open(tmp_path / "gateway.log", "w")
    proc = subprocess.Popen([mcpgw_bin, "run", "--catalog", str(catalog)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log,
                            env={**os.environ, "MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn")})
    writer = None
    try:
        lines = Lines(proc.stdout)

        def send(message):
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()

        send({"jsonrpc": "2.0", "id": "init", "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "slow-reader", "version": "1"}}})
        assert lines.answer("init", 60)["result"]["protocolVersion"] == "2025-11-25"
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
        tools = {t["name"] for t in lines.answer("list", 120)["result"]["tools"]}
        assert "sdk__big" in tools, tools

        # Every call in one go, from a thread: the gateway may stop reading
        # while its answers wait for this client.
        burst = b"".join(json.dumps(big_call(i)).encode() + b"\n" for i in range(1, CALLS + 1))

        def write_all():
            proc.stdin.write(burst)
            proc.stdin.flush()

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        time.sleep(3)

        answers, counts = {}, collections.Counter()
        deadline = time.monotonic() + 180
        while len(answers) < CALLS:
            message = lines.next(deadline, f"answers: {len(answers)} of {CALLS} so far, "
                                           f"missing {sorted(set(range(1, CALLS + 1)) - set(answers))[:10]}...")
            if "method" in message:
                continue  # a notification
            counts[message.get("id")] += 1
            answers[message.get("id")] = message
        # Nothing more for these calls: an echo is the next answer.
        send({"jsonrpc": "2.0", "id": "after", "method": "tools/call",
              "params": {"name": "sdk__echo", "arguments": {"text": "still here"}}})
        deadline = time.monotonic() + 60
        while True:
            message = lines.next(deadline)
            if "method" in message:
                continue
            if message.get("id") == "after":
                break
            counts[message.get("id")] += 1
        assert message["result"]["content"][0]["text"] == "still here", message
        writer.join(30)
        assert not writer.is_alive()
        check_answers(answers, counts)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def http_request(port, body: dict, headers: dict) -> bytes:
    data = json.dumps(body).encode()
    head = [f"POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            "Accept: application/json, text/event-stream", f"Content-Length: {len(data)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def parse_http(raw: bytes):
    """(status, headers, JSON-RPC messages) of one HTTP/1.1 response read to
    its end, JSON or SSE, chunked or not."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    if headers.get("content-type", "").startswith("text/event-stream"):
        messages = []
        for event in body.decode().replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
            if data.strip():
                messages.append(json.loads(data))
    else:
        messages = [json.loads(body)] if body.strip() else []
    return status, headers, messages


async def exchange(port, body, headers, delay=0.0) -> tuple:
    """One request on a connection of its own; its response is read only
    after `delay` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(http_request(port, body, headers))
    await writer.drain()
    await asyncio.sleep(delay)
    raw = await asyncio.wait_for(reader.read(), timeout=180)
    writer.close()
    return parse_http(raw)


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
def test_slow_reading_http_clients_get_every_answer_once_and_intact(era, mcpgw_bin, tmp_path):
    """300 concurrent POSTs for 48 KiB each (one handshake-era session, or
    300 stateless 2026-07-28 requests), every response left unread for 3 s."""
    gateway = HttpGateway(mcpgw_bin, tmp_path, CATALOG)

    async def run():
        headers = {"MCP-Protocol-Version": era}
        meta = None
        if era == "2025-11-25":
            status, response_headers, messages = await exchange(gateway.port, {
                "jsonrpc": "2.0", "id": "init", "method": "initialize",
                "params": {"protocolVersion": era, "capabilities": {},
                           "clientInfo": {"name": "slow-reader", "version": "1"}}}, {})
            assert status == 200 and messages and messages[-1]["result"]["protocolVersion"] == era, (status, messages)
            headers["Mcp-Session-Id"] = response_headers["mcp-session-id"]
            status, _, _ = await exchange(gateway.port, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                          headers)
            assert status == 202, status
        else:
            meta = {"io.modelcontextprotocol/protocolVersion": era,
                    "io.modelcontextprotocol/clientCapabilities": {}}
            headers.update({"Mcp-Method": "tools/call", "Mcp-Name": "sdk__big"})
        responses = await asyncio.gather(*(exchange(gateway.port, big_call(i, meta), headers, delay=3)
                                           for i in range(1, CALLS + 1)))
        answers, counts = {}, collections.Counter()
        for request_id, (status, _, messages) in zip(range(1, CALLS + 1), responses):
            assert status == 200, f"call {request_id}: HTTP {status}"
            for message in messages:
                if "method" not in message:
                    counts[message.get("id")] += 1
                    answers[message.get("id")] = message
        return answers, counts

    try:
        answers, counts = asyncio.run(run())
        check_answers(answers, counts)
    finally:
        gateway.stop()


# ---- log messages stay in their session ----------------------------------------

def token(mcpgw_bin, store, name, profile) -> str:
    created = subprocess.run([mcpgw_bin, "token", "create", name, "--profile", profile, "--tokens", str(store)],
                             capture_output=True, text=True, check=True)
    return created.stdout.strip()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_log_messages_reach_only_the_session_whose_call_made_them(mode, mcpgw_bin, tmp_path):
    """Two HTTP clients with different profiles, both asking for log
    messages: A sees the SDK server and calls its `chatter`, B sees only the
    test server. A gets its five lines; B gets none of them."""
    store = tmp_path / "tokens.json"
    tokens = {name: token(mcpgw_bin, store, name, profile)
              for name, profile in [("a", "sdk-only"), ("b", "other-only")]}
    gateway = HttpGateway(mcpgw_bin, tmp_path, PROFILES, "--auth", "token", "--tokens", str(store))

    def client(name, logs):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gateway.url, http_client=http_client), mode=mode,
                      logging_callback=logs, log_level="info")

    logs_a, logs_b = Logs(), Logs()
    try:
        with anyio.fail_after(120):
            async with client("a", logs_a) as a, client("b", logs_b) as b:
                seen_a = {t.name for t in (await a.list_tools()).tools}
                seen_b = {t.name for t in (await b.list_tools()).tools}
                assert "sdk__chatter" in seen_a and all(n.startswith("sdk__") for n in seen_a), seen_a
                assert "other__echo" in seen_b and all(n.startswith("other__") for n in seen_b), seen_b
                if mode == "legacy":
                    # Both ask for logs, the handshake era's way (a 2026-07-28
                    # client asks on each request: `log_level` above).
                    for c in (a, b):
                        await c.set_logging_level("info")
                assert text(await b.call_tool("other__echo", {"text": "b first"})) == "b first"
                assert text(await a.call_tool("sdk__chatter", {"n": 5})) == "chattered 5"
                await logs_a.wait_for(5)
                assert text(await b.call_tool("other__echo", {"text": "b after"})) == "b after"
                await anyio.sleep(1)
        leaked = [line for line in logs_b.lines if str(line).startswith("line ")]
        assert not leaked, f"B received A's log messages: {leaked}"
        assert logs_a.lines == [f"line {i}" for i in range(1, 6)], f"A received {logs_a.lines}"
    finally:
        gateway.stop()
