#!/opt/mcp/bin/python
"""A real MCP server, written with the official Python SDK (mcp==2.3.0), for
mcpgw's tests and benchmarks.

mcpgw's own test server (crates/mcpgw-testserver) is written to inject
faults; this one is what an ordinary server built on the SDK's high-level
`MCPServer` API looks like on the wire, so the witness tests and the
benchmarks can check the gateway against the real thing. It serves over
stdio and speaks both eras, as the SDK decides per request: with a client
of the handshake era (`initialize`, up to 2025-11-25) the tools that need
the client send standalone `elicitation/create`, `sampling/createMessage`
and `roots/list` requests mid-call; with a `2026-07-28` client they answer
with an `InputRequiredResult` and resume when the call is retried with
`inputResponses` and the sealed `requestState`.

Tools:
  echo(text)      -> text
  big(kib)        -> exactly kib*1024 characters, deterministic (see `big_text`)
  ask_name()      -> elicits {name} and answers "hello <name>", "declined" or "cancelled"
  summarize(text) -> asks the client to sample and answers with the model's text
  list_roots()    -> the client's root URIs, one a line
  count(n)        -> n progress reports (1..n of n) as fast as it can, then "counted n"
  chatter(n)      -> n log messages (info, "line i"), then "chattered n"

Runs in the `mcpgw/python-servers:dev` image as
`/opt/mcp/bin/python /opt/sdk/server.py` (read-only root, any uid, no network).
"""

import warnings
from typing import Annotated

from mcp import MCPDeprecationWarning
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, ListRoots, MCPServer, Resolve, Sample
from mcp.types import CreateMessageResult, ListRootsResult, SamplingMessage, TextContent
from pydantic import BaseModel

server = MCPServer("mcpgw-sdk-server", version="1")


def big_text(kib: int) -> str:
    """kib*1024 characters: a 64-character line naming the block and `kib`, repeated."""
    out = []
    for block in range(kib * 16):
        line = f"kib={kib} block={block} "
        out.append(line + "." * (63 - len(line)) + "\n")
    return "".join(out)


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool(structured_output=False)
def big(kib: int) -> str:
    """Returns exactly kib*1024 characters."""
    return big_text(kib)


class Name(BaseModel):
    name: str


def name_question() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@server.tool(structured_output=False)
def ask_name(answer: Annotated[ElicitationResult[Name], Resolve(name_question)]) -> str:
    """Asks the user for a name (elicitation) and greets them."""
    if answer.action == "accept":
        return f"hello {answer.data.name}"
    return "declined" if answer.action == "decline" else "cancelled"


def summary_request(text: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=f"Summarize: {text}"))],
        max_tokens=100,
    )


@server.tool(structured_output=False)
def summarize(text: str, sampled: Annotated[CreateMessageResult, Resolve(summary_request)]) -> str:
    """Asks the client's model to summarize text (sampling) and returns its answer."""
    content = sampled.content
    return content.text if isinstance(content, TextContent) else f"<{content.type}>"


def roots_request() -> ListRoots:
    return ListRoots()


@server.tool(structured_output=False)
def list_roots(roots: Annotated[ListRootsResult, Resolve(roots_request)]) -> str:
    """Returns the client's roots, one URI a line."""
    return "\n".join(str(root.uri) for root in roots.roots)


@server.tool(structured_output=False)
async def count(n: int, ctx: Context) -> str:
    """Reports progress 1..n (of n) as fast as it can, then answers."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n)
    return f"counted {n}"


@server.tool(structured_output=False)
async def chatter(n: int, ctx: Context) -> str:
    """Sends n log messages (info, "line i"), then answers."""
    for i in range(1, n + 1):
        await ctx.log("info", f"line {i}")
    return f"chattered {n}"


if __name__ == "__main__":
    # `Context.log` is deprecated as of 2026-07-28 (SEP-2577), but it is what
    # a server of either era does to send a log message.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    server.run("stdio")
