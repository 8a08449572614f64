"""Hot reload of the catalog under `mcpgw run`, through the official MCP
Python SDK in both protocol eras, with real containers.

In one gateway session per era, the catalog file is rewritten in place and
replaced editor-style (a temporary file renamed over it), and each time
the gateway must apply the difference: a server added starts and its tools
appear; an allowlist change keeps the server's container; an `env` change
replaces that server's container and no other; a server removed loses its
tools and its container. Each reload that changes the client's view sends
it one `notifications/tools/list_changed` (legacy) or one tools event on
its `subscriptions/listen` stream (2026-07-28), after the new servers have
started, and logs one `catalog reloaded:` line with a summary of the
difference. A broken catalog changes nothing and is refused with its
file:line:column in the log. Throughout, a long call to a server the
reloads do not touch is in flight, and it ends with its normal result.
Apart from the file watcher, SIGHUP triggers a reload too.

A reload that removes or replaces a server ends the calls in flight on it
at once, each with an error that says why, and leaves the others alone. A
reload needing a secret no source has is refused whole and names it; a
secret the reloaded catalog is the first to use is redacted like any
other. Over HTTP, reloads applied and refused have their audit records
and their counts on `/metrics`.

Containers are found by the labels mcpgw gives them (`io.mcpgw.pid`, the
gateway's process id; `io.mcpgw.server`, the catalog server). The gateway
is started through `sh` so that the test knows its pid and keeps its
stderr; `exec` makes the shell's pid the gateway's."""

import hashlib
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import time
from contextlib import AsyncExitStack

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from test_http import Gateway as HttpGateway, raw

MODES = ["legacy", "auto"]
# The long call must outlast every reload of the session test; the test
# checks that it is still in flight after the last one.
LONG_MS = 40_000
DEADLINE = 60

HEAD = """\
version: 1
gateway:
  init_timeout: 60s
  call_timeout: 120s
servers:
  testserver:
    image: mcpgw/testserver:dev
    pull: never
    tools:
      allow: [slow, echo]
"""


def time_server(allow: str, pull: str = "never") -> str:
    return (
        "  time:\n"
        "    image: mcpgw/python-servers:dev\n"
        f"    pull: {pull}\n"
        '    entrypoint: ["/opt/mcp/bin/mcp-server-time"]\n'
        '    command: ["--local-timezone", "UTC"]\n'
        f"    tools:\n      allow: {allow}\n"
    )


def extra_server(env: str) -> str:
    return (
        "  extra:\n"
        "    image: mcpgw/testserver:dev\n"
        "    pull: never\n"
        f"    env: {env}\n"
        '    tools:\n      allow: [env, "tool_*"]\n'
    )


class Gateway:
    """`mcpgw run --catalog` in `tmp_path`, as the client starts it, with its
    stderr kept in a file and its pid in another, and `env` added to its
    environment."""

    def __init__(self, mcpgw_bin: str, tmp_path: pathlib.Path, env: dict[str, str] | None = None):
        self.bin = mcpgw_bin
        self.catalog = tmp_path / "catalog.yaml"
        self.log = tmp_path / "gateway.log"
        self.pidfile = tmp_path / "gateway.pid"
        self.env = env or {}

    def params(self) -> StdioServerParameters:
        script = 'echo $$ > "$0"; exec "$1" run --catalog "$2" 2>>"$3"'
        return StdioServerParameters(
            command="sh",
            args=["-c", script, str(self.pidfile), self.bin, str(self.catalog), str(self.log)],
            env={"MCPGW_LOG": "info,rmcp=warn", "NO_COLOR": "1", **self.env},
        )

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def write(self, text: str, *, editor: bool) -> None:
        """Rewrites the catalog: in place, or as editors save (a new file
        renamed over the old one)."""
        if editor:
            temporary = self.catalog.with_name(".catalog.yaml.swp")
            temporary.write_text(text)
            os.replace(temporary, self.catalog)
        else:
            with open(self.catalog, "w") as file:
                file.write(text)

    def lines(self, needle: str) -> list[str]:
        """The gateway's stderr lines that contain `needle`."""
        return [line for line in self.log.read_text().splitlines() if needle in line]

    async def nth_line(self, needle: str, n: int) -> str:
        """Waits for the `n`th stderr line containing `needle` and returns it."""

        def logged() -> bool:
            assert_alive(self.pid, self.log)
            return len(self.lines(needle)) >= n

        await until(logged, lambda: f"no {n} lines with {needle!r} in:\n{self.log.read_text()}")
        found = self.lines(needle)
        assert len(found) == n, f"more than {n} lines with {needle!r}: {found}"
        return found[-1]

    def record(self, needle: str) -> str:
        """The one log record whose first line contains `needle`, with the
        lines that continue it (those that do not start with a time)."""
        records = re.split(r"\n(?=\d{4}-\d\d-\d\dT)", self.log.read_text())
        found = [record for record in records if needle in record.split("\n", 1)[0]]
        assert len(found) == 1, f"records with {needle!r}: {found}"
        return found[0]

    def containers(self, server: str) -> list[str]:
        """Ids of the containers (any state) this gateway runs for `server`,
        egress proxies aside."""
        done = subprocess.run(
            ["docker", "ps", "-a", "--no-trunc",
             "--filter", f"label=io.mcpgw.pid={self.pid}",
             "--filter", f"label=io.mcpgw.server={server}",
             "--format", '{{.ID}} {{.Label "io.mcpgw.role"}}'],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return [row.split()[0] for row in done.stdout.splitlines() if row.split()[1:] == []]

    def container(self, server: str) -> str:
        ids = self.containers(server)
        assert len(ids) == 1, f"server {server}: containers {ids}"
        return ids[0]

    async def containers_until(self, server: str, check, what: str) -> list[str]:
        """Polls `server`'s containers until `check(ids)` holds."""
        await until(lambda: check(self.containers(server)), lambda: f"{what}: containers {self.containers(server)}")
        return self.containers(server)


async def until(check, failure, deadline: float = DEADLINE) -> None:
    """Polls `check()` until it holds; past `deadline` seconds, fails with
    `failure()`."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, failure()
        await anyio.sleep(0.05)


def assert_alive(pid: int, log: pathlib.Path) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise AssertionError(f"the gateway exited; its stderr:\n{log.read_text()}") from None


async def names(client) -> set[str]:
    """Every tool name the gateway lists now, across pages, past the
    client's response cache (the test asks what the gateway serves)."""
    tools, cursor = set(), None
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        tools |= {t.name for t in page.tools}
        cursor = page.next_cursor
        if cursor is None:
            return tools


async def names_until(client, check, what: str) -> set[str]:
    """Lists tools until `check(names)` holds."""
    deadline = time.monotonic() + DEADLINE
    while not check(listed := await names(client)):
        assert time.monotonic() < deadline, f"{what}: tools are {sorted(listed)}"
        await anyio.sleep(0.2)
    return listed


async def count_until(seen: list, n: int, what: str) -> None:
    """Waits until `seen` holds `n` change notices; more is a failure."""
    await until(lambda: len(seen) >= n, lambda: f"{what}: no change notice came ({len(seen)} of {n})")
    assert len(seen) == n, f"{what}: {len(seen)} change notices, expected {n}"


def method_of(message):
    return getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)


def summary_of(line: str) -> dict[str, str]:
    """What a `catalog reloaded:` line says happened to each server, as in
    `+github ~git ~fetch(replaced) -time`."""
    kinds = {"+": "added", "~": "updated", "-": "removed"}
    text = line.split("catalog reloaded:", 1)[1]
    return {
        name: "replaced" if replaced else kinds[sign]
        for sign, name, replaced in re.findall(r"(?<![\w-])([+~-])([a-z0-9][\w-]*)(\(replaced\))?", text)
    }


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_reload_applies_the_difference_and_disturbs_nothing_else(mode, mcpgw_bin, tmp_path):
    gw = Gateway(mcpgw_bin, tmp_path)
    gw.write(HEAD + time_server("[get_current_time]"), editor=False)
    seen = []

    async def on_message(message):
        if method_of(message) == "notifications/tools/list_changed":
            seen.append(message)

    handler = on_message if mode == "legacy" else None
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(Client(gw.params(), mode=mode, message_handler=handler))
        tasks = await stack.enter_async_context(anyio.create_task_group())
        if mode != "legacy":
            listening = await stack.enter_async_context(client.listen(tools_list_changed=True))

            async def collect():
                async for event in listening:
                    seen.append(event)

            tasks.start_soon(collect)

        # (1) The starting point, and a long call to `testserver`, which no
        # reload below touches, in flight on the server before any reload.
        start = {"testserver__slow", "testserver__echo", "time__get_current_time"}
        await names_until(client, lambda n: n == start, "at start")
        testserver, time_id = gw.container("testserver"), gw.container("time")
        notices = len(seen)
        progress, long = [], {}

        async def on_progress(value, total, message):
            progress.append(value)

        async def long_call():
            long["result"] = await client.call_tool(
                "testserver__slow", {"ms": LONG_MS, "steps": LONG_MS // 500}, progress_callback=on_progress
            )

        tasks.start_soon(long_call)
        await until(lambda: progress, lambda: "the long call reported no progress")

        async def reload(text: str, *, editor: bool, what: str) -> None:
            """Rewrites the catalog and waits for the one change notice of
            its reload, after the one of each reload before."""
            nonlocal reloads
            assert len(seen) == notices + reloads, f"before {what}: a change notice too many"
            gw.write(text, editor=editor)
            reloads += 1
            await count_until(seen, notices + reloads, what)

        reloads = 0

        # (2) A server added: it starts, then the client hears of it once,
        # and its tools are there when it does.
        await reload(
            HEAD + time_server("[get_current_time]") + extra_server("{ MARK: one }"), editor=True, what="server added"
        )
        added = start | {"extra__env"}
        assert await names(client) == added
        reloaded = await gw.nth_line("catalog reloaded:", 1)
        assert summary_of(reloaded) == {"extra": "added"}, reloaded
        mark = await client.call_tool("extra__env", {"name": "MARK"})
        assert not mark.is_error and mark.content[0].text == "one", mark
        extra = gw.container("extra")

        # (3) An allowlist changed: gateway-side only, the container stays.
        await reload(
            HEAD + time_server("[get_current_time, convert_time]") + extra_server("{ MARK: one }"),
            editor=False,
            what="allowlist changed",
        )
        allowed = added | {"time__convert_time"}
        assert await names(client) == allowed
        reloaded = await gw.nth_line("catalog reloaded:", 2)
        assert summary_of(reloaded) == {"time": "updated"}, reloaded
        assert gw.containers("time") == [time_id]
        converted = await client.call_tool(
            "time__convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"}
        )
        assert not converted.is_error, converted

        # (4) A container setting changed (`env`): that server's container
        # is replaced, the others stay.
        await reload(
            HEAD
            + time_server("[get_current_time, convert_time]")
            + extra_server("{ MARK: two, MCPGW_TEST_TOOLS: '2' }"),
            editor=True,
            what="container replaced",
        )
        replaced = allowed | {"extra__tool_0", "extra__tool_1"}
        assert await names(client) == replaced
        reloaded = await gw.nth_line("catalog reloaded:", 3)
        assert summary_of(reloaded) == {"extra": "replaced"}, reloaded
        ids = await gw.containers_until("extra", lambda ids: len(ids) == 1, "old container removed")
        assert ids != [extra], "extra's container was not replaced"
        assert gw.containers("testserver") == [testserver] and gw.containers("time") == [time_id]
        mark = await client.call_tool("extra__env", {"name": "MARK"})
        assert not mark.is_error and mark.content[0].text == "two", mark

        # (5) A server removed: its tools go, then its container.
        await reload(HEAD + time_server("[get_current_time, convert_time]"), editor=True, what="server removed")
        remaining = start | {"time__convert_time"}
        assert await names(client) == remaining
        reloaded = await gw.nth_line("catalog reloaded:", 4)
        assert summary_of(reloaded) == {"extra": "removed"}, reloaded
        await gw.containers_until("extra", lambda ids: ids == [], "removed server's container")
        assert gw.containers("testserver") == [testserver] and gw.containers("time") == [time_id]

        # (6) A broken catalog (a list where `pull` takes a word, on a
        # known line): refused, logged with its place, nothing changes.
        broken = HEAD + time_server("[get_current_time, convert_time]", pull="[never]")
        line = broken.splitlines().index("    pull: [never]") + 1
        gw.write(broken, editor=False)
        refusal = await gw.nth_line("catalog reload refused", 1)
        assert "ERROR" in refusal.split("catalog reload refused")[0], refusal
        assert f"{gw.catalog}:{line}:" in refusal, refusal
        assert await names(client) == remaining
        assert gw.containers("testserver") == [testserver] and gw.containers("time") == [time_id]
        assert len(gw.lines("catalog reloaded:")) == 4
        assert len(seen) == notices + 4, "a refused reload announced a change"

        # (7) The long call outlived every reload and ends as it would have.
        assert "result" not in long, f"the long call ended before the last reload: raise LONG_MS ({LONG_MS})"
        await until(lambda: "result" in long, lambda: "the long call never ended", DEADLINE + LONG_MS / 1000)
        result = long["result"]
        assert not result.is_error and result.content[0].text == f"slept {LONG_MS}ms", result
        assert gw.containers("testserver") == [testserver]
        assert len(seen) == notices + 4


@pytest.mark.anyio
async def test_sighup_reloads_the_catalog(mcpgw_bin, tmp_path):
    """SIGHUP with the file unchanged: a reload that finds no difference,
    so no container changes and the client hears of nothing; then SIGHUP
    after a change applies it."""
    gw = Gateway(mcpgw_bin, tmp_path)
    gw.write(HEAD, editor=False)
    seen = []

    async def on_message(message):
        if method_of(message) == "notifications/tools/list_changed":
            seen.append(message)

    async with Client(gw.params(), mode="legacy", message_handler=on_message) as client:
        start = {"testserver__slow", "testserver__echo"}
        await names_until(client, lambda n: n == start, "at start")
        testserver = gw.container("testserver")
        assert gw.lines("catalog reloaded:") == []

        os.kill(gw.pid, signal.SIGHUP)
        line = await gw.nth_line("catalog reloaded:", 1)
        assert 'trigger="sighup"' in line and "no change" in line, line
        assert_alive(gw.pid, gw.log)
        assert await names(client) == start
        assert gw.containers("testserver") == [testserver]
        echoed = await client.call_tool("testserver__echo", {"text": "still here"})
        assert echoed.content[0].text == "still here"
        assert seen == [], "a reload without a difference announced a change"

        gw.write(HEAD.replace("allow: [slow, echo]", "allow: [slow, echo, add]"), editor=True)
        os.kill(gw.pid, signal.SIGHUP)
        await names_until(client, lambda n: n == start | {"testserver__add"}, "after SIGHUP")
        assert gw.containers("testserver") == [testserver]


def slow_server(name: str, env: str = "{}") -> str:
    """A testserver named `name` that serves only `slow`."""
    return (
        f"  {name}:\n"
        "    image: mcpgw/testserver:dev\n"
        "    pull: never\n"
        f"    env: {env}\n"
        "    tools:\n      allow: [slow]\n"
    )


# How long a call cut by a reload may take to end, from the catalog write:
# the reload, then stopping the server's container.
PROMPTLY = 10


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_calls_in_flight_to_a_removed_or_replaced_server_end_with_why(mode, mcpgw_bin, tmp_path):
    """One reload removes `doomed` and replaces `changed` (its `env`
    changed) while a long call is in flight on each and on `testserver`,
    which the reload leaves alone: the first two end soon after, each with
    an error that says why; the third is still in flight then and ends with
    its normal result."""
    gw = Gateway(mcpgw_bin, tmp_path)
    gw.write(HEAD + slow_server("doomed") + slow_server("changed", "{ MARK: one }"), editor=False)
    async with Client(gw.params(), mode=mode) as client, anyio.create_task_group() as tasks:
        start = {"testserver__slow", "testserver__echo", "doomed__slow", "changed__slow"}
        await names_until(client, lambda n: n == start, "at start")
        testserver, changed = gw.container("testserver"), gw.container("changed")
        # Each call outlasts the test's deadlines unless something cuts it;
        # the one on `testserver` outlasts the reload and the two cut calls.
        lengths = {"testserver": 12_000, "doomed": 120_000, "changed": 120_000}
        progress = {server: [] for server in lengths}
        ended = {}

        async def call(server: str) -> None:
            async def on_progress(value, total, message):
                progress[server].append(value)

            ms = lengths[server]
            try:
                result = await client.call_tool(
                    f"{server}__slow", {"ms": ms, "steps": ms // 500}, progress_callback=on_progress
                )
            except Exception as error:
                ended[server] = ("error", str(error), time.monotonic())
            else:
                text = "".join(c.text for c in result.content if c.type == "text")
                ended[server] = ("error" if result.is_error else "result", text, time.monotonic())

        for server in lengths:
            tasks.start_soon(call, server)
        await until(lambda: all(progress.values()), lambda: f"a long call reported no progress: {progress}")
        assert ended == {}, f"a call ended before the reload: {ended}"

        written = time.monotonic()
        gw.write(HEAD + slow_server("changed", "{ MARK: two }"), editor=True)
        reloaded = await gw.nth_line("catalog reloaded:", 1)
        assert summary_of(reloaded) == {"doomed": "removed", "changed": "replaced"}, reloaded
        await until(
            lambda: {"doomed", "changed"} <= ended.keys(),
            lambda: f"the cut calls did not end within {PROMPTLY}s of the reload: {ended}",
            PROMPTLY,
        )
        for server, why in [
            ("doomed", "server `doomed` was removed from the catalog by a reload"),
            ("changed", "server `changed` is being replaced"),
        ]:
            kind, message, at = ended[server]
            assert kind == "error" and why in message, f"{server}: {ended[server]}"
            assert at - written < PROMPTLY, f"{server} ended {at - written:.1f}s after the reload"
        assert "testserver" not in ended, f"the untouched server's call was cut: {ended['testserver']}"
        assert gw.containers("testserver") == [testserver]

        await names_until(client, lambda n: n == start - {"doomed__slow"}, "after the reload")
        await gw.containers_until("doomed", lambda ids: ids == [], "removed server's container")
        ids = await gw.containers_until("changed", lambda ids: len(ids) == 1, "old container removed")
        assert ids != [changed], "changed's container was not replaced"
        again = await client.call_tool("changed__slow", {"ms": 10})
        assert not again.is_error and again.content[0].text == "slept 10ms", again

        await until(lambda: "testserver" in ended, lambda: "the untouched call never ended", DEADLINE)
        assert ended["testserver"][:2] == ("result", f"slept {lengths['testserver']}ms"), ended["testserver"]
        assert gw.containers("testserver") == [testserver]


API = "api-Rl07-Hv3k-Tw95-reload"
VAULT = """\
  vault:
    image: mcpgw/testserver:dev
    pull: never
    secrets: { API_TOKEN: api.token }
    tools:
      allow: [env, echo]
"""


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_reload_needing_a_secret_no_source_has_is_refused_whole(mode, mcpgw_bin, tmp_path):
    """The reload widens `testserver`'s allowlist and adds `vault`, whose
    secret `api.token` no source has: neither change is made, and the
    refusal names the secret."""
    gw = Gateway(mcpgw_bin, tmp_path, env={"MCPGW_SECRETS": "env"})
    gw.write(HEAD, editor=False)
    async with Client(gw.params(), mode=mode) as client:
        start = {"testserver__slow", "testserver__echo"}
        await names_until(client, lambda n: n == start, "at start")
        testserver = gw.container("testserver")

        gw.write(HEAD.replace("allow: [slow, echo]", "allow: [slow, echo, add]") + VAULT, editor=True)
        line = await gw.nth_line("catalog reload refused", 1)
        assert "ERROR" in line.split("catalog reload refused")[0], line
        refusal = gw.record("catalog reload refused")
        assert "\n" not in refusal.strip(), f"the refusal is one log line: {refusal}"
        assert "`api.token`" in refusal and "the running configuration is unchanged" in refusal, refusal
        assert gw.lines("catalog reloaded:") == []
        assert await names(client) == start
        assert gw.containers("testserver") == [testserver] and gw.containers("vault") == []
        echoed = await client.call_tool("testserver__echo", {"text": "still here"})
        assert not echoed.is_error and echoed.content[0].text == "still here", echoed


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_secret_first_needed_after_a_reload_is_redacted(mode, mcpgw_bin, tmp_path):
    """The secret's source has it from the start, but only the reloaded
    catalog uses it: the server added gets the value, the client sees
    `[REDACTED:api.token]`, and the value is in no log line."""
    gw = Gateway(mcpgw_bin, tmp_path, env={"MCPGW_SECRETS": "env", "MCPGW_SECRET_API_TOKEN": API})
    gw.write(HEAD, editor=False)
    received = []
    async with Client(gw.params(), mode=mode) as client:
        start = {"testserver__slow", "testserver__echo"}
        await names_until(client, lambda n: n == start, "at start")
        testserver = gw.container("testserver")

        gw.write(HEAD + VAULT, editor=True)
        await names_until(client, lambda n: n == start | {"vault__env", "vault__echo"}, "after the reload")
        reloaded = await gw.nth_line("catalog reloaded:", 1)
        assert summary_of(reloaded) == {"vault": "added"}, reloaded
        assert gw.containers("testserver") == [testserver]

        env = await client.call_tool("vault__env", {"name": "API_TOKEN"})
        received.append(env.model_dump_json())
        assert not env.is_error and env.content[0].text == "[REDACTED:api.token]", env
        echoed = await client.call_tool("vault__echo", {"text": f"say {API}"})
        received.append(echoed.model_dump_json())
        assert echoed.content[0].text == "say [REDACTED:api.token]", echoed
        with pytest.raises(MCPError) as refused:
            await client.call_tool("testserver__echo", {"text": API})
        received.append(str(refused.value))
        assert "server `testserver` is not given" in str(refused.value)

    for seen in received:
        assert API not in seen, seen
    assert API not in gw.log.read_text(), "the secret's value is in the gateway's log"


def metric(port: int, sample: str) -> float:
    """The value of `sample` (a name with its labels) on `/metrics`, 0 when
    it is not there."""
    status, _, body = raw(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    values = [line.rsplit(" ", 1)[1] for line in body.splitlines() if line.rsplit(" ", 1)[0] == sample]
    assert len(values) <= 1, values
    return float(values[0]) if values else 0


def audit_records(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.anyio
async def test_reloads_are_audited_and_counted_over_http(mcpgw_bin, tmp_path):
    """Over HTTP, one reload applied and one refused: each has its audit
    record after the start-up one, and `/metrics` counts one of each; then
    a removal, after which the removed server has no `mcpgw_server_up`."""
    audit = tmp_path / "audit.jsonl"
    head = HEAD.replace("gateway:\n", f"gateway:\n  audit: {{ path: {audit} }}\n")
    gw = HttpGateway(mcpgw_bin, tmp_path, catalog_text=head)
    catalog = tmp_path / "catalog.yaml"
    applied = 'mcpgw_catalog_reloads_total{result="applied"}'
    refused = 'mcpgw_catalog_reloads_total{result="refused"}'
    try:
        assert (metric(gw.port, applied), metric(gw.port, refused)) == (0, 0)
        started = [r for r in audit_records(audit) if r["event"] == "config"]
        assert len(started) == 1 and "change" not in started[0], started

        text = head + extra_server("{ MARK: one }")
        catalog.write_text(text)
        await until(lambda: metric(gw.port, applied) == 1, lambda: "the reload was not counted as applied")
        configs = [r for r in audit_records(audit) if r["event"] == "config"]
        assert len(configs) == 2, configs
        config = configs[1]
        assert config["change"] == "+extra" and config["servers"] == ["testserver", "extra"], config
        assert config["catalog"] == str(catalog) and config["front"] == "http", config
        assert config["catalog_sha256"] == hashlib.sha256(text.encode()).hexdigest(), config

        broken = head + time_server("[get_current_time]", pull="[never]")
        catalog.write_text(broken)
        await until(lambda: metric(gw.port, refused) == 1, lambda: "the reload was not counted as refused")
        refusals = [r for r in audit_records(audit) if r["event"] == "config_refused"]
        assert len(refusals) == 1, refusals
        assert refusals[0]["catalog"] == str(catalog) and f"{catalog}:" in refusals[0]["error"], refusals
        assert metric(gw.port, applied) == 1 and metric(gw.port, refused) == 1
        assert [r["event"] for r in audit_records(audit) if r["event"].startswith("config")] == [
            "config", "config", "config_refused"
        ]

        # A server removed leaves no state gauges behind.
        up = 'mcpgw_server_up{server="extra"}'
        status, _, body = raw(f"http://127.0.0.1:{gw.port}/metrics")
        assert status == 200 and f"{up} 1" in body, body
        catalog.write_text(head)
        await until(lambda: metric(gw.port, applied) == 2, lambda: "the removal was not counted as applied")
        status, _, body = raw(f"http://127.0.0.1:{gw.port}/metrics")
        assert status == 200 and up not in body and 'mcpgw_server_up{server="testserver"} 1' in body, body
    finally:
        log = gw.stop()
    assert "catalog reload refused" in log and log.count("catalog reloaded:") == 2, log


def views(a: str) -> str:
    """Two profiles: `a` permits the tools `a` names, `b` only `add`."""
    return f"profiles:\n  a:\n    tools: {a}\n  b:\n    tools: [testserver__add]\n"


# How long a client that should hear nothing is given to hear something,
# once the client that should hear of the reload has: a notice is an event
# that may come, so its absence can only be asserted by waiting a bounded
# time for it and finding none.
GRACE = 1.5


async def quiet_for(heard, seconds: float) -> None:
    """Waits `seconds`, or less if `heard()` holds first."""
    with anyio.move_on_after(seconds):
        while not heard():
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_a_reload_tells_only_the_clients_whose_view_changed(mcpgw_bin, tmp_path):
    """Over HTTP, two handshake-era clients bound to profiles `a` (`echo`)
    and `b` (`add`): a reload that widens `a` tells `a` alone, and one that
    drops `add` from `testserver`'s allowlist tells `b` alone. Neither hears
    of prompts or resources. The gateway runs through a script that keeps
    its pid and stderr in files, so that the stdio `Gateway` helper reads
    its log and rewrites its catalog while it runs."""
    store = tmp_path / "tokens.json"
    tokens = {
        profile: subprocess.run(
            [mcpgw_bin, "token", "create", profile, "--profile", profile, "--tokens", str(store)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for profile in ["a", "b"]
    }
    logged = Gateway(mcpgw_bin, tmp_path)
    wrapper = tmp_path / "mcpgw"
    wrapper.write_text(
        f'#!/bin/sh\necho $$ > {shlex.quote(str(logged.pidfile))}\n'
        f'exec {shlex.quote(mcpgw_bin)} "$@" 2>>{shlex.quote(str(logged.log))}\n'
    )
    wrapper.chmod(0o755)
    with_add = HEAD.replace("allow: [slow, echo]", "allow: [slow, echo, add]")
    gw = HttpGateway(str(wrapper), tmp_path, "--auth", "token", "--tokens", str(store),
                     catalog_text=with_add + views("[testserver__echo]"))
    got = {"a": [], "b": []}

    def on_message(who):
        async def handle(message):
            method = method_of(message)
            if method and method.endswith("/list_changed"):
                got[who].append(method)
        return handle

    def client_for(who):
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[who]}"},
                                         timeout=httpx2.Timeout(30, read=300))
        return Client(streamable_http_client(gw.url, http_client=http_client), mode="legacy",
                      message_handler=on_message(who))

    def tools_notices(who) -> list[str]:
        return [m for m in got[who] if m == "notifications/tools/list_changed"]

    try:
        async with client_for("a") as a, client_for("b") as b:
            assert await names(a) == {"testserver__echo"}
            assert await names(b) == {"testserver__add"}

            # (1) Profile `a` widened, the servers unchanged: only `a`'s
            # view changed.
            logged.write(with_add + views("[testserver__echo, testserver__slow]"), editor=True)
            await until(lambda: tools_notices("a"), lambda: f"a heard of no change: {got}")
            await logged.nth_line("catalog reloaded:", 1)
            await quiet_for(lambda: got["b"], GRACE)
            assert tools_notices("a") == ["notifications/tools/list_changed"], got
            assert got["b"] == [], f"b's view did not change, yet it was told: {got}"
            assert await names(a) == {"testserver__echo", "testserver__slow"}
            assert await names(b) == {"testserver__add"}

            # (2) `testserver` no longer allows `add`: `b`'s view lost it,
            # `a`'s tools are as they were.
            logged.write(HEAD + views("[testserver__echo, testserver__slow]"), editor=True)
            await until(lambda: tools_notices("b"), lambda: f"b heard of no change: {got}")
            reloaded = await logged.nth_line("catalog reloaded:", 2)
            assert summary_of(reloaded) == {"testserver": "updated"}, reloaded
            await quiet_for(lambda: len(got["a"]) > 1, GRACE)
            assert tools_notices("b") == ["notifications/tools/list_changed"], got
            assert len(tools_notices("a")) == 1, f"a's view did not change, yet it was told: {got}"
            assert await names(b) == set()
            assert await names(a) == {"testserver__echo", "testserver__slow"}
            # A profile is a view of tools only: no prompts or resources
            # notices, ever.
            assert got == {"a": ["notifications/tools/list_changed"],
                           "b": ["notifications/tools/list_changed"]}, got

            # (3) A catalog without profile `b`, to which a token is bound,
            # is refused as start-up would refuse it: nothing changes.
            logged.write(HEAD + "profiles:\n  a:\n    tools: [testserver__echo]\n", editor=True)
            refusal = await logged.nth_line("catalog reload refused", 1)
            assert "token `b` is bound to profile `b`" in refusal, refusal
            assert await names(a) == {"testserver__echo", "testserver__slow"}
            assert len(logged.lines("catalog reloaded:")) == 2
    finally:
        gw.stop()
