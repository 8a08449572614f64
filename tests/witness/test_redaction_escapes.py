"""Secret values behind JSON escapes, through the official Python client in
both eras: whatever a backend's answer holds that any JSON decoder turns into
an injected value (one character as `\\uXXXX`, every character, a surrogate
pair nearby, JSON carried in the text) reaches the client redacted, or, under
`redaction: block`, as an error; and a request carrying another server's
value in an escaped form is refused before it reaches that server.

The backend here is the test server's `echo`: the client sends the escaped
form to the server that is given the secret (which is allowed), and the
server's answer carries it back, as a backend that writes the value escaped
would."""

import json

import pytest
from mcp import Client, MCPError, StdioServerParameters

MODES = ["legacy", "auto"]
API = "api-Zx81-Qm4r-Lp20-value"
CATALOG = """version: 1
gateway:
  redaction: {redaction}
servers:
  vault:
    image: mcpgw/testserver:dev
    pull: never
    secrets: {{ API_TOKEN: api.token }}
  other:
    image: mcpgw/testserver:dev
    pull: never
"""


def escape_all(value: str) -> str:
    """Every character as `\\uXXXX` (UTF-16 units, as JSON writes them)."""
    units = value.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02X}{units[i + 1]:02X}" for i in range(0, len(units), 2))


ONE = API.replace("Q", "\\u0051")
ESCAPED = {
    "one character": ONE,
    "every character": escape_all(API),
    "a surrogate pair beside it": "\\ud83d\\ude00 " + API[:-1] + "\\u0065",
    "JSON in the text": json.dumps({"key": API}, ensure_ascii=True).replace("Q", "\\u0051"),
    "mixed with a direct hit": f"{API} and {ONE}",
}


def text(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def gateway(mcpgw_bin, tmp_path, redaction):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG.format(redaction=redaction))
    return StdioServerParameters(
        command=mcpgw_bin,
        args=["run", "--catalog", str(catalog)],
        env={"MCPGW_LOG": "warn", "MCPGW_SECRETS": "env", "MCPGW_SECRET_API_TOKEN": API},
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_escaped_values_are_redacted_and_refused(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, tmp_path, "redact"), mode=mode) as client:
        seen = []
        for label, escaped in ESCAPED.items():
            got = text(await client.call_tool("vault__echo", {"text": escaped}))
            seen.append(got)
            assert "[REDACTED:api.token]" in got, f"{label}: {got}"
            assert API not in got and API not in json.dumps(got), f"{label}: {got}"
            assert "Zx81" not in got, f"{label}: nothing of the value is left: {got}"
        assert seen[0] == "[REDACTED:api.token]"
        assert json.loads(seen[3]) == {"key": "[REDACTED:api.token]"}
        assert seen[4] == "[REDACTED:api.token] and [REDACTED:api.token]"
        # Text with escapes that hide nothing comes back as it went.
        assert text(await client.call_tool("vault__echo", {"text": "caf\\u00e9 \\/"})) == "caf\\u00e9 \\/"

        for label, escaped in ESCAPED.items():
            with pytest.raises(MCPError) as refused:
                await client.call_tool("other__echo", {"text": escaped})
            message = str(refused.value)
            assert "secret `api.token`, which server `other` is not given" in message, f"{label}: {message}"
            assert API not in message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_escaped_values_are_withheld_under_block(mode, mcpgw_bin, tmp_path):
    async with Client(gateway(mcpgw_bin, tmp_path, "block"), mode=mode) as client:
        for label, escaped in ESCAPED.items():
            with pytest.raises(MCPError) as withheld:
                await client.call_tool("vault__echo", {"text": escaped})
            message = str(withheld.value)
            assert "withheld this response" in message and "`api.token`" in message, f"{label}: {message}"
            assert API not in message
        # Nothing was lost: the session still answers.
        assert text(await client.call_tool("vault__echo", {"text": "still here"})) == "still here"
