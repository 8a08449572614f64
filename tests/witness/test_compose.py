"""The compose deployment: mcpgw itself in a container (mcpgw/gateway:dev),
serving Streamable HTTP with bearer tokens, starting its servers as sibling
containers through the Docker socket; the official Python client calls a
tool through it; `docker-compose down` leaves no server container behind."""

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(url, headers=None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def server_containers(server: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.mcpgw.server={server}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split()


@pytest.mark.anyio
async def test_the_compose_stack_serves_calls_with_tokens(mcpgw_bin, tmp_path):
    port = free_port()
    server = f"composed-{port}"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"version: 1\nservers:\n  {server}:\n    image: mcpgw/testserver:dev\n    pull: never\n")
    tokens = tmp_path / "tokens.json"
    token = subprocess.run([mcpgw_bin, "token", "create", "team", "--tokens", str(tokens)],
                           capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "MCPGW_CATALOG": str(catalog), "MCPGW_TOKENS": str(tokens),
           "MCPGW_PORT": str(port), "COMPOSE_PROJECT_NAME": f"mcpgwtest{port}"}
    compose = ["docker-compose", "-f", str(COMPOSE)]
    subprocess.run([*compose, "up", "-d"], env=env, check=True, timeout=120)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if status_of(f"{base}/readyz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, subprocess.run(
                [*compose, "logs"], env=env, capture_output=True, text=True).stdout
            time.sleep(0.2)
        assert status_of(f"{base}/metrics") == 401, "metrics need a token when authentication is on"
        http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                         timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http_client), mode="auto") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert f"{server}__echo" in names
            result = await client.call_tool(f"{server}__echo", {"text": "through compose"})
            assert "".join(c.text for c in result.content if c.type == "text") == "through compose"
        assert len(server_containers(server)) == 1, "the gateway started its server as a sibling container"
    finally:
        logs = subprocess.run([*compose, "logs"], env=env, capture_output=True, text=True).stdout
        # The audit trail, in the stack's volume (read from the host).
        volume = subprocess.run(["docker", "volume", "inspect", f"mcpgwtest{port}_mcpgw-state",
                                 "--format", "{{.Mountpoint}}"], capture_output=True, text=True)
        audit = (pathlib.Path(volume.stdout.strip()) / "mcpgw" / "audit.jsonl") if volume.returncode == 0 else None
        audited = audit.read_text() if audit and audit.exists() else ""
        subprocess.run([*compose, "down", "-v", "-t", "15"], env=env, check=True, timeout=120)
    assert token not in logs
    calls = [json.loads(line) for line in audited.splitlines() if '"event":"call"' in line]
    assert [(c["client"], c["exposed"], c["decision"]) for c in calls] == [
        ("team", f"{server}__echo", "allowed")], audited
    assert server_containers(server) == [], "the gateway removed its server on the way down"
