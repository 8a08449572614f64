#!/usr/bin/env python3
"""Instructions per call, counted by valgrind's callgrind: repeatable for the
same binary and inputs, whatever else the machine is doing.

Usage:
  scripts/instructions-per-call.py gateway CATALOG [CALLS] [IN_FLIGHT] [--stateless]
  scripts/instructions-per-call.py server TESTSERVER

`gateway` runs `target/release/mcpgw run --catalog CATALOG` (or `$MCPGW run
...`, to measure another build) under callgrind,
warms it up with 200 calls, zeroes the counters, makes CALLS (default 2000)
calls of `s0__echo` with up to IN_FLIGHT (default 16) pipelined, and prints
the gateway's instructions per call (its user space only; the kernel's work
is not counted). With `--stateless` the client speaks `2026-07-28`, with the
`_meta` the official Python client sends. The catalog is one
`mcpgw/testserver:dev` server named `s0`, as for scripts/cpu-per-call.py.

`server` runs the static test server binary (built by
scripts/build-images.sh under target/static/) on a file of requests and
prints its instructions per `tools/call` for each shape of request it may
be sent: as a handshake-era client sends it, as mcpgw sends it to a
`2026-07-28` server, and with one part of that `_meta` more or less.
BENCHMARKS.md quotes both.
"""

import json
import os
import subprocess
import sys
import tempfile

META_2026 = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "roots": {}},
}
CLIENT_INFO = {"io.modelcontextprotocol/clientInfo": {"name": "mcpgw", "version": "0.1.0"}}


def gateway(catalog: str, calls: int, in_flight: int, stateless: bool) -> None:
    out = tempfile.mkdtemp(prefix="mcpgw-callgrind.")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/out.%p",
               "--dump-instr=no", "--compress-strings=no", "--compress-pos=no",
               os.environ.get("MCPGW", "target/release/mcpgw"), "run", "--catalog", catalog]
    env = dict(os.environ, MCPGW_LOG="error")
    with open(f"{out}/valgrind.log", "w") as log:
        gw = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=log, env=env)
    meta = dict(META_2026, **{"io.modelcontextprotocol/clientInfo": {"name": "ipc", "version": "1"}})

    def send(message: dict) -> None:
        gw.stdin.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
        gw.stdin.flush()

    def answer() -> dict:
        return json.loads(gw.stdout.readline())

    if stateless:
        send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}})
    else:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "ipc", "version": "1"}}})
        answer()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    answer()

    def batch(first: int, count: int) -> None:
        done = first
        while done < first + count:
            n = min(in_flight, first + count - done)
            lines = b""
            for i in range(done, done + n):
                params = {"name": "s0__echo", "arguments": {"text": f"call {i}"}}
                if stateless:
                    params["_meta"] = meta
                lines += (json.dumps({"jsonrpc": "2.0", "id": i + 10, "method": "tools/call",
                                      "params": params}, separators=(",", ":")) + "\n").encode()
            gw.stdin.write(lines)
            gw.stdin.flush()
            for _ in range(n):
                reply = answer()
                if "result" not in reply:
                    sys.exit(f"unexpected answer: {reply}")
            done += n

    batch(0, 200)
    subprocess.run(["callgrind_control", "-z", str(gw.pid)], check=True, stdout=subprocess.DEVNULL)
    batch(1000, calls)
    subprocess.run(["callgrind_control", "-d", "measured", str(gw.pid)], check=True,
                   stdout=subprocess.DEVNULL)
    gw.stdin.close()
    gw.wait()
    dump = next(f for f in os.listdir(out) if f.endswith(".1"))
    summary = next(line for line in open(f"{out}/{dump}") if line.startswith("summary:"))
    total = int(summary.split()[1])
    era = "2026-07-28" if stateless else "handshake-era"
    print(f"{total / calls:.0f} instructions per call ({era} client, {calls} calls, "
          f"up to {in_flight} in flight); callgrind data in {out}")


def server_instructions(testserver: str, lines: bytes) -> int:
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          testserver], input=lines, capture_output=True)
    for line in run.stderr.decode().splitlines():
        if "Collected" in line:
            return int(line.split()[-1].replace(",", ""))
    sys.exit(run.stderr.decode()[-2000:])


def server(testserver: str) -> None:
    def requests(meta: dict | None, token: bool, calls: int) -> bytes:
        out = []
        if meta is None:
            out.append({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "ipc", "version": "1"}}})
            out.append({"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i in range(calls):
            params = {"name": "echo", "arguments": {"text": f"call {i}"}}
            request_meta = dict(meta or {})
            if token:
                request_meta["progressToken"] = f"mcpgw-x{i}"
            if request_meta:
                params["_meta"] = request_meta
            out.append({"jsonrpc": "2.0", "id": f"mcpgw-x{i}", "method": "tools/call",
                        "params": params})
        return "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in out).encode()

    shapes = [
        ("handshake era, no progress token (a plain client's call)", None, False),
        ("handshake era, with a progress token", None, True),
        ("2026-07-28, as mcpgw sends it", META_2026, True),
        ("2026-07-28, as mcpgw sends it, plus the client's info", dict(META_2026, **CLIENT_INFO), True),
    ]
    for name, meta, token in shapes:
        few = server_instructions(testserver, requests(meta, token, 100))
        many = server_instructions(testserver, requests(meta, token, 1100))
        print(f"{(many - few) / 1000:8.0f} instructions per call: {name}")


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "gateway":
        rest = [a for a in sys.argv[3:] if a != "--stateless"]
        gateway(sys.argv[2], int(rest[0]) if rest else 2000,
                int(rest[1]) if len(rest) > 1 else 16, "--stateless" in sys.argv)
    elif len(sys.argv) == 3 and sys.argv[1] == "server":
        server(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
