#!/usr/bin/env python3
"""The gateway's CPU per call for lone, sequential calls.

Usage: scripts/cpu-per-call.py CATALOG [CALLS] [TOOL] [IN_FLIGHT]

Runs `perf stat -e task-clock target/release/mcpgw run --catalog CATALOG`,
makes CALLS `tools/call`s of TOOL (default 5000 of `s0__echo`, the test
server's echo), one at a time or with up to IN_FLIGHT pipelined, and prints
the gateway's CPU time per call (start-up subtracted by a run with one call)
and, for sequential calls, the client-side p50. BENCHMARKS.md quotes it; the
catalog is one `mcpgw/testserver:dev` server named `s0` (with an `in_flight`
limit of at least IN_FLIGHT).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time


def run(catalog: str, calls: int, tool: str, in_flight: int = 1) -> tuple[float, float]:
    """The gateway's task-clock in ms, and the p50 in µs."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as stat:
        command = ["perf", "stat", "-e", "task-clock", "-o", stat.name,
                   "target/release/mcpgw", "run", "--catalog", catalog]
        env = dict(os.environ, MCPGW_LOG="error")
        gateway = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

        def rpc(message: dict) -> dict | None:
            gateway.stdin.write((json.dumps(message) + "\n").encode())
            gateway.stdin.flush()
            return json.loads(gateway.stdout.readline()) if "id" in message else None

        rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "cpu-per-call", "version": "1"}}})
        rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
        rpc({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        times = []
        if in_flight > 1:
            pipelined(gateway, calls, tool, in_flight)
            calls = 0
        for i in range(calls):
            text = f"call {i}"
            began = time.perf_counter()
            answer = rpc({"jsonrpc": "2.0", "id": i + 2, "method": "tools/call",
                          "params": {"name": tool, "arguments": {"text": text}}})
            times.append(time.perf_counter() - began)
            if text not in json.dumps(answer):
                sys.exit(f"unexpected answer: {answer}")
        gateway.stdin.close()
        gateway.wait()
        clock = re.search(r"([\d.,]+)\s+msec task-clock", open(stat.name).read())
        times.sort()
        p50 = times[len(times) // 2] * 1e6 if times else 0.0
        return float(clock.group(1).replace(",", "")), p50


def pipelined(gateway: subprocess.Popen, calls: int, tool: str, in_flight: int) -> None:
    """Makes `calls` calls with up to `in_flight` unanswered at a time."""
    sent = answered = 0
    while answered < calls:
        batch = b""
        while sent < calls and sent - answered < in_flight:
            batch += (json.dumps({"jsonrpc": "2.0", "id": sent + 2, "method": "tools/call",
                                  "params": {"name": tool, "arguments": {"text": f"call {sent}"}}})
                      + "\n").encode()
            sent += 1
        gateway.stdin.write(batch)
        gateway.stdin.flush()
        # Read half a window (at least one answer) before refilling it.
        for _ in range(max(1, min(in_flight // 2, sent - answered))):
            answer = json.loads(gateway.stdout.readline())
            if "result" not in answer:
                sys.exit(f"unexpected answer: {answer}")
            answered += 1


def main() -> None:
    catalog = sys.argv[1]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    tool = sys.argv[3] if len(sys.argv) > 3 else "s0__echo"
    in_flight = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    base, _ = run(catalog, 1, tool)
    total, p50 = run(catalog, calls, tool, in_flight)
    per_call = (total - base) * 1e3 / (calls - 1)
    if in_flight > 1:
        print(f"{calls} calls, up to {in_flight} in flight: {per_call:.1f} µs of gateway CPU per call")
    else:
        print(f"{calls} sequential calls: {per_call:.0f} µs of gateway CPU per call, p50 {p50:.0f} µs")


if __name__ == "__main__":
    main()
