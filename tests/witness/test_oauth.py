"""The HTTP front as an OAuth 2.1 resource server (`--auth oauth`), against
a real authorization server on loopback (`authserver.py`, built with
authlib) and driven by the official Python client in both eras: tokens
for this resource work and select profiles by their claims; tokens for
another audience or resource, expired, from another issuer, signed by an
unknown key, unsigned or HS256-signed with the public key are 401; a
missing scope is 403; the metadata the 401 names is served; a key
rotation at the server is picked up without a restart."""

import base64
import hashlib
import hmac
import json
import re
import time

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from authserver import AuthServer, Client as Registered
from test_http import Gateway, raw

MODES = ["legacy", "auto"]
RESOURCE = "http://127.0.0.1:{port}/mcp"
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def catalog(issuer: str, audit) -> str:
    return f"""version: 1
gateway:
  audit: {{ path: {audit} }}
  auth:
    oauth:
      issuer: {issuer}
      resource: {RESOURCE}
      scopes: [mcp]
      jwks_refresh: 200ms
      profiles:
        admin: {{ scope: mcp.admin }}
        ci: {{ claim: groups, value: ci }}
servers:
  one:
    image: mcpgw/testserver:dev
    pull: never
  two:
    image: mcpgw/testserver:dev
    pull: never
profiles:
  admin:
    tools: ["*"]
  ci:
    tools: [two__echo]
"""


@pytest.fixture
def authserver():
    server = AuthServer([
        Registered("alice", "alice-secret", ["mcp", "mcp.admin"]),
        Registered("bob", "bob-secret", ["mcp"], groups=["ci"]),
        Registered("carol", "carol-secret", ["other"], groups=["ci"]),
        Registered("stale", "stale-secret", ["mcp"], groups=["ci"], lifetime=-600),
    ])
    yield server
    server.stop()


@pytest.fixture
def gateway(mcpgw_bin, tmp_path, authserver):
    audit = tmp_path / "audit.jsonl"
    gw = Gateway(mcpgw_bin, tmp_path, "--auth", "oauth",
                 catalog_text=catalog(authserver.issuer, audit))
    gw.audit = audit
    yield gw
    gw.stop()


def client(gw, token, mode):
    http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                     timeout=httpx2.Timeout(30, read=300))
    return Client(streamable_http_client(gw.url, http_client=http_client), mode=mode)


def ping(gw, token=None):
    """A bare ping, outside a session: past authentication rmcp answers
    it with 400, so 401 and 403 are the gate's own."""
    headers = {**JSON, **({"Authorization": f"Bearer {token}"} if token else {})}
    return raw(gw.url, "POST", PING, headers)


ADMITTED = 400


def good_claims(authserver, gw, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": authserver.issuer, "aud": gw.url, "sub": "mallory", "client_id": "mallory",
              "scope": "mcp mcp.admin", "iat": now, "exp": now + 300}
    claims.update(changes)
    return claims


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tokens_for_this_resource_work_and_their_claims_pick_the_profile(mode, gateway, authserver):
    alice = authserver.token("alice", "mcp mcp.admin", resource=gateway.url)
    bob = authserver.token("bob", "mcp", resource=gateway.url)
    async with client(gateway, alice, mode) as a, client(gateway, bob, mode) as b:
        seen_by_alice = {t.name for t in (await a.list_tools()).tools}
        seen_by_bob = {t.name for t in (await b.list_tools()).tools}
        assert {"one__echo", "two__echo", "two__add"} <= seen_by_alice
        assert seen_by_bob == {"two__echo"}
        assert (await a.call_tool("two__add", {"a": 2, "b": 3})).content[0].text == "5"
        assert (await b.call_tool("two__echo", {"text": "hi"})).content[0].text == "hi"
    calls = [json.loads(line) for line in gateway.audit.read_text().splitlines()]
    calls = [(r["client"], r.get("profile"), r["exposed"]) for r in calls if r["event"] == "call"]
    assert calls == [("alice", "admin", "two__add"), ("bob", "ci", "two__echo")]


def test_the_401_names_the_metadata_that_is_served(gateway, authserver):
    status, headers, _ = ping(gateway)
    assert status == 401
    challenge = headers["www-authenticate"]
    assert challenge.startswith("Bearer "), challenge
    url = re.search(r'resource_metadata="([^"]+)"', challenge).group(1)
    assert url == f"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource/mcp"
    documents = [json.loads(raw(u)[2]) for u in [url, url.removesuffix("/mcp")]]
    assert documents[0] == documents[1]
    assert documents[0]["resource"] == gateway.url
    assert documents[0]["authorization_servers"] == [authserver.issuer]
    assert documents[0]["bearer_methods_supported"] == ["header"]
    assert set(documents[0]["scopes_supported"]) == {"mcp", "mcp.admin"}


def test_tokens_not_for_this_gateway_are_401_and_a_missing_scope_is_403(gateway, authserver):
    as_key = authserver.private_pem()
    kid = authserver.public_jwk()["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = serialization.load_pem_private_key(as_key, None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def signed(claims, key=as_key, headers=None):
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, **(headers or {})})

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(good_claims(authserver, gateway)).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    refused = {
        "another resource": (authserver.token("bob", "mcp", resource="http://127.0.0.1:1/mcp"),
                             "audience"),
        "wrong audience": (signed(good_claims(authserver, gateway, aud="https://elsewhere.example")),
                           "audience"),
        "expired": (authserver.token("stale", "mcp", resource=gateway.url), "expired"),
        "wrong issuer": (signed(good_claims(authserver, gateway, iss="http://127.0.0.1:1")),
                         "another issuer"),
        "unknown kid": (signed(good_claims(authserver, gateway), key=stranger, headers={"kid": "nobody"}),
                        "not one the issuer publishes"),
        "alg none": (f"{unsigned}.{body}.", "not a JWT signed with an algorithm"),
        "HS256 with the public key": (f"{header}.{body}.{b64(mac)}", "HS256 is not accepted"),
    }
    for case, (token, reason) in refused.items():
        status, headers, text = ping(gateway, token)
        assert status == 401, (case, text)
        assert 'error="invalid_token"' in headers["www-authenticate"], case
        assert "resource_metadata=" in headers["www-authenticate"], case
        assert reason in text, (case, text)
    # The same forged claims, signed by the server's key, pass: the
    # refusals above were for what each case changed.
    assert ping(gateway, signed(good_claims(authserver, gateway)))[0] == ADMITTED
    status, headers, text = ping(gateway, authserver.token("carol", "other", resource=gateway.url))
    assert status == 403, text
    assert 'error="insufficient_scope"' in headers["www-authenticate"]
    assert 'scope="mcp"' in headers["www-authenticate"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_key_rotation_at_the_server_is_picked_up(mode, gateway, authserver):
    before = authserver.token("bob", "mcp", resource=gateway.url)
    assert ping(gateway, before)[0] == ADMITTED
    fetches = authserver.jwks_fetches
    new_kid = authserver.rotate()
    after = authserver.token("bob", "mcp", resource=gateway.url)
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    async with client(gateway, after, mode) as bob:
        assert (await bob.call_tool("two__echo", {"text": "rotated"})).content[0].text == "rotated"
    assert authserver.jwks_fetches == fetches + 1, "one refetch, for the new kid"
    # The old key left the server's set, and so the gateway's.
    status, _, text = ping(gateway, before)
    assert status == 401 and "not one the issuer publishes" in text, text
