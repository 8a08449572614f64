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

Containers are found by the labels mcpgw gives them (`io.mcpgw.pid`, the
gateway's process id; `io.mcpgw.server`, the catalog server). The gateway
is started through `sh` so that the test knows its pid and keeps its
stderr; `exec` makes the shell's pid the gateway's."""

import os
import pathlib
import re
import signal
import subprocess
import time
from contextlib import AsyncExitStack

import anyio
import pytest
from mcp import Client, StdioServerParameters

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
    stderr kept in a file and its pid in another."""

    def __init__(self, mcpgw_bin: str, tmp_path: pathlib.Path):
        self.bin = mcpgw_bin
        self.catalog = tmp_path / "catalog.yaml"
        self.log = tmp_path / "gateway.log"
        self.pidfile = tmp_path / "gateway.pid"

    def params(self) -> StdioServerParameters:
        script = 'echo $$ > "$0"; exec "$1" run --catalog "$2" 2>>"$3"'
        return StdioServerParameters(
            command="sh",
            args=["-c", script, str(self.pidfile), self.bin, str(self.catalog), str(self.log)],
            env={"MCPGW_LOG": "info,rmcp=warn", "NO_COLOR": "1"},
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
