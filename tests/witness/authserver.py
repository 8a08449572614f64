"""A real OAuth 2.1 authorization server on loopback, built with authlib,
for the witness tests of the gateway as a resource server.

authlib's own `AuthorizationServer` runs the client-credentials grant
(client authentication, scope checks, errors) and its RFC 9068
`JWTBearerTokenGenerator` issues RS256 JWT access tokens; this file only
adapts them to the standard library's HTTP server, and adds what a test
needs: per-client claims (`groups`) and lifetimes, the RFC 8707 `resource`
parameter as the token's audience, and key rotation on demand. It serves
RFC 8414 metadata (`/.well-known/oauth-authorization-server`), the JWKS
(`/jwks`) and the token endpoint (`/token`).
"""

import base64
import json
import os
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

# authlib refuses plain http unless told; this server lives on loopback.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.jose import JsonWebKey  # noqa: E402
from authlib.oauth2.rfc6749 import (  # noqa: E402
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant  # noqa: E402
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # noqa: E402


@dataclass
class Client(ClientMixin):
    """A registered client: its secret, the scopes it may ask for, the
    `groups` its tokens carry, and how long they live (negative: already
    expired, for the tests)."""

    client_id: str
    secret: str
    scopes: list[str]
    groups: list[str] = field(default_factory=list)
    lifetime: int = 300

    def get_client_id(self):
        return self.client_id

    def get_allowed_scope(self, scope):
        return " ".join(s for s in scope.split() if s in self.scopes) if scope else ""

    def check_client_secret(self, client_secret):
        return client_secret == self.secret

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_basic"

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"

    def get_default_redirect_uri(self):
        return None

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_response_type(self, response_type):
        return False


class _Payload(OAuth2Payload):
    def __init__(self, form: dict):
        self._form = form

    @property
    def data(self):
        return {k: v[0] for k, v in self._form.items()}

    @property
    def datalist(self):
        return self._form


class _Request(OAuth2Request):
    def __init__(self, uri, headers, form):
        super().__init__("POST", uri, headers=headers)
        self.payload = _Payload(form)
        self.form_data = form

    @property
    def args(self):
        return {}

    @property
    def form(self):
        return {k: v[0] for k, v in self.form_data.items()}


class _Tokens(JWTBearerTokenGenerator):
    """RFC 9068 tokens: signed with the server's current key, `aud` from
    the request's `resource`, `groups` from the client."""

    def __init__(self, server):
        super().__init__(issuer=server.issuer, expires_generator=lambda c, g: c.lifetime)
        self.server = server

    def get_jwks(self):
        return {"keys": [self.server.signing_key.as_dict(is_private=True)]}

    def get_audiences(self, client, user, scope):
        return self.server.resource_of_request

    def get_extra_claims(self, client, grant_type, user, scope):
        return {"groups": client.groups} if client.groups else {}


class AuthServer(AuthorizationServer):
    """The authorization server, listening on a loopback port of its own."""

    def __init__(self, clients: list[Client]):
        super().__init__()
        self.clients = {c.client_id: c for c in clients}
        self.httpd = HTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.resource_of_request = None
        self.jwks_fetches = 0
        # Every access token issued, in order (the tests look for them in
        # logs, and count refreshes).
        self.issued = []
        self.rotate()
        self.register_grant(ClientCredentialsGrant)
        self.register_token_generator("client_credentials", _Tokens(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def rotate(self) -> str:
        """A new signing key replaces the old one, in the JWKS too; its kid."""
        self.generation = getattr(self, "generation", 0) + 1
        kid = f"key-{self.generation}"
        self.signing_key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": kid})
        return kid

    def public_jwk(self) -> dict:
        return self.signing_key.as_dict(is_private=False)

    def private_pem(self) -> bytes:
        return self.signing_key.as_pem(is_private=True)

    def stop(self):
        if self.thread is None:
            return
        thread, self.thread = self.thread, None
        self.httpd.shutdown()
        self.httpd.server_close()
        thread.join(timeout=10)

    def token(self, client_id: str, scope: str, resource: str | None = None) -> str:
        """An access token by the client-credentials grant, over HTTP."""
        form = {"grant_type": "client_credentials", "scope": scope}
        if resource:
            form["resource"] = resource
        secret = self.clients[client_id].secret
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        request = urllib.request.Request(
            f"{self.issuer}/token",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["access_token"]

    # What authlib asks of a framework integration.

    def query_client(self, client_id):
        return self.clients.get(client_id)

    def save_token(self, token, request):
        pass

    def send_signal(self, name, *args, **kwargs):
        pass

    def create_oauth2_request(self, request):
        return request

    def create_json_request(self, request):
        raise NotImplementedError("no JSON endpoints here")

    def handle_response(self, status, body, headers):
        return status, body, headers

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body, headers=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                if not any(n.lower() == "content-type" for n, _ in headers):
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/.well-known/oauth-authorization-server":
                    self.send(200, {
                        "issuer": server.issuer,
                        "token_endpoint": f"{server.issuer}/token",
                        "jwks_uri": f"{server.issuer}/jwks",
                        "grant_types_supported": ["client_credentials"],
                        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                    })
                elif self.path == "/jwks":
                    server.jwks_fetches += 1
                    self.send(200, {"keys": [server.public_jwk()]})
                else:
                    self.send(404, {"error": "not_found"})

            def do_POST(self):
                if self.path != "/token":
                    return self.send(404, {"error": "not_found"})
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                # authlib looks headers up by their canonical names; HTTP
                # clients may send them in lower case (reqwest does).
                headers = {name.title(): value for name, value in self.headers.items()}
                request = _Request(f"{server.issuer}/token", headers, form)
                server.resource_of_request = form.get("resource", [None])[0]
                status, body, headers = server.create_token_response(request)
                if status == 200:
                    server.issued.append(body["access_token"])
                self.send(status, body, headers)

        return Handler
