"""A remote MCP server for the witness tests: written with the official
Python SDK (mcp==2.3.0, `MCPServer`), served over Streamable HTTP on
loopback by uvicorn, behind a credential check of its own.

It admits a request only with the credential it was started with:
  --header NAME --value-file FILE   the header's exact value (read from FILE)
  --issuer URL --audience URL       a bearer JWT from that authorization
                                    server, checked with PyJWT against its
                                    JWKS: RS256 signature, `iss`, `aud`, and
                                    `exp` with no leeway (an expired token
                                    is refused, so a gateway that does not
                                    refresh fails)
Anything else gets 401. Every `Authorization` header it receives is
appended to --seen FILE (one a line), so a test can tell which tokens
reached it, and that a client's own token never did.

Tools: echo(text) -> text; add(a, b) -> a+b; credential() -> the value of
the checked header or the bearer token, as received (a server that leaks
its credential: the gateway must redact it).

Run: python remote_server.py --port P (--header … | --issuer …) --seen FILE
"""

import argparse
import json

import jwt
import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("mcpgw-remote-server", version="1")
# The last credential admitted (the tests make one call at a time).
received = {"credential": ""}


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool(structured_output=False)
def add(a: int, b: int) -> str:
    """Adds two numbers."""
    return str(a + b)


@server.tool(structured_output=False)
def credential() -> str:
    """Returns the credential this request carried (a leak, on purpose)."""
    return received["credential"]


class Gate:
    """ASGI middleware: the credential check in front of the SDK's app."""

    def __init__(self, app, args):
        self.app = app
        self.args = args
        self.expected = None
        if args.value_file:
            with open(args.value_file) as f:
                self.expected = f.read().strip()
        self.keys = jwt.PyJWKClient(f"{args.issuer}/jwks") if args.issuer else None

    def check(self, headers: dict) -> str | None:
        """The credential, if it is the right one."""
        if self.expected is not None:
            value = headers.get(self.args.header.lower())
            return value if value == self.expected else None
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        token = auth.removeprefix("Bearer ")
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["RS256"], audience=self.args.audience,
                       issuer=self.args.issuer, leeway=0)
        except jwt.PyJWTError:
            return None
        return token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if "authorization" in headers:
            with open(self.args.seen, "a") as f:
                f.write(headers["authorization"] + "\n")
        credential = self.check(headers)
        if credential is None:
            body = json.dumps({"error": "invalid_token"}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer error="invalid_token"'),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        received["credential"] = credential
        await self.app(scope, receive, send)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--header")
    parser.add_argument("--value-file")
    parser.add_argument("--issuer")
    parser.add_argument("--audience")
    parser.add_argument("--seen", required=True)
    args = parser.parse_args()
    app = Gate(server.streamable_http_app(host="127.0.0.1"), args)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
