#!/usr/bin/env python3
"""How long a catalog reload takes, as a client sees it, and what a call in
flight meanwhile costs.

Starts `mcpgw run` (the binary given) over stdio with the official MCP
client (legacy era) on a catalog of one Rust test server (`mcpgw/testserver:dev`,
`make images`), and times, N times each, from the moment the new catalog is
renamed over the old one to the moment the client holds the
`notifications/tools/list_changed` the reload sends:

- in place: the server's `tools.allow` changes (no container touched);
- add: a second test server is added (a container created and started,
  its handshake and lists);
- replace: that server's `env` changes (its container removed, a new one
  started), so that it lists one more tool or one fewer (a replacement
  that lists what the old container did changes no client's view, and no
  notice is sent);
- remove: it is removed again.

The file must stay unchanged for 200 ms before the gateway reads it (editors
write in steps), so every figure includes that wait. Meanwhile a client
calls `echo` on the first server in a loop; its p50/max during the run are
printed, against the same loop before any reload.

Usage: scripts/reload-latency.py MCPGW_BIN [N]
"""

import asyncio
import os
import statistics
import sys
import tempfile
import time

from mcp import StdioServerParameters
from mcp.client import Client

BASE = """version: 1
gateway: {{ init_timeout: 60s }}
servers:
  first:
    image: mcpgw/testserver:dev
    pull: never
    tools: {{ allow: [{allow}] }}
{extra}"""

EXTRA = """  second:
    image: mcpgw/testserver:dev
    pull: never
    env: {{ MCPGW_TEST_TOOLS: "{mark}" }}
    tools: {{ allow: [echo, "tool_*"] }}
"""


def write(path: str, text: str) -> float:
    """Renames a new catalog over `path`, as an editor saves; when."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    at = time.perf_counter()
    os.replace(tmp, path)
    return at


async def main(binary: str, rounds: int) -> None:
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "catalog.yaml")
    write(path, BASE.format(allow="echo", extra=""))
    notices: asyncio.Queue = asyncio.Queue()

    async def on_message(message):
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/tools/list_changed":
            await notices.put(time.perf_counter())

    params = StdioServerParameters(
        command=binary, args=["run", "--catalog", path], env={"MCPGW_LOG": os.environ.get("MCPGW_LOG", "warn")}
    )
    async with Client(params, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        calls: list[float] = []

        async def calling(until: asyncio.Event) -> None:
            while not until.is_set():
                began = time.perf_counter()
                result = await client.call_tool("first__echo", {"text": "x"})
                assert not result.is_error, result
                calls.append(time.perf_counter() - began)

        quiet = asyncio.Event()
        loop = asyncio.create_task(calling(quiet))
        await asyncio.sleep(3)
        quiet.set()
        await loop
        before = calls[:]
        calls.clear()

        steps = {
            "in place": [BASE.format(allow="echo, add", extra=""), BASE.format(allow="echo", extra="")],
            "add": [BASE.format(allow="echo", extra=EXTRA.format(mark="1"))],
            "replace": [BASE.format(allow="echo", extra=EXTRA.format(mark="2")),
                        BASE.format(allow="echo", extra=EXTRA.format(mark="1"))],
            "remove": [BASE.format(allow="echo", extra="")],
        }
        timings: dict[str, list[float]] = {k: [] for k in steps}
        done = asyncio.Event()
        loop = asyncio.create_task(calling(done))
        for _ in range(rounds):
            for kind in ["in place", "add", "replace", "remove"]:
                for text in steps[kind]:
                    # Notices of an earlier step that came late are not this one's.
                    while not notices.empty():
                        notices.get_nowait()
                    at = write(path, text)
                    heard = await asyncio.wait_for(notices.get(), 120)
                    timings[kind].append(heard - at)
        done.set()
        await loop

    def ms(values: list[float]) -> str:
        values = sorted(values)
        return (f"n={len(values):3d}  p50 {statistics.median(values) * 1000:8.1f} ms  "
                f"max {values[-1] * 1000:8.1f} ms")

    print(f"mcpgw {binary}, {rounds} round(s); file renamed -> list_changed at the client")
    for kind, values in timings.items():
        print(f"  {kind:9s} {ms(values)}")
    print("echo calls on the unchanged server")
    print(f"  before    {ms(before)}")
    print(f"  during    {ms(calls)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5))
