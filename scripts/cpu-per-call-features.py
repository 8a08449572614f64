"""CPU time of the gateway process per call: `perf stat -e task-clock` on
`mcpgw run` over stdio, driven with N pipelined `t__echo` calls (64 in
flight) by raw JSON-RPC lines, then EOF; run at two N so start-up and
shutdown cancel: (cpu(N2) - cpu(N1)) / (N2 - N1)."""
import asyncio, json, os, subprocess, sys

async def drive(cmd, n, window=64):
    p = await asyncio.create_subprocess_shell(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              limit=1 << 24)
    def send(m):
        p.stdin.write((json.dumps(m) + "\n").encode())
    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "cpu", "version": "1"}}})
    await p.stdout.readline()
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    sent = done = 0
    while done < n:
        while sent < n and sent - done < window:
            sent += 1
            send({"jsonrpc": "2.0", "id": sent, "method": "tools/call",
                  "params": {"name": "t__echo", "arguments": {"text": "hello"}}})
        await p.stdin.drain()
        line = await p.stdout.readline()
        reply = json.loads(line)
        if "id" in reply and reply["id"]:
            assert "result" in reply, reply
            done += 1
    p.stdin.close()
    await p.wait()

def cpu_ms(catalog, env, n, tag):
    out = f"/tmp/bench/stat-{tag}"
    cmd = (f"{env} MCPGW_LOG=warn perf stat -x, -o {out} -e task-clock "
           f"/work/main/target/release/mcpgw run --catalog {catalog}")
    asyncio.run(drive(cmd, n))
    for line in open(out):
        if "task-clock" in line:
            return float(line.split(",")[0])

# An OTLP/HTTP receiver must be running (tests/witness/otlp.py's Receiver),
# its URL in /tmp/bench/receiver.url; catalogs /tmp/bench/cat-{off,audit,trace,both}.yaml
# (audit and both with `gateway.audit: { path: … }`), see BENCHMARKS.md.
url = open("/tmp/bench/receiver.url").read()
configs = {"off": "", "audit": "", "trace": f"OTEL_EXPORTER_OTLP_ENDPOINT={url}", "both": f"OTEL_EXPORTER_OTLP_ENDPOINT={url}"}
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
N1, N2 = 2000, 22000
results = {k: [] for k in configs}
for r in range(rounds):
    for name, env in configs.items():
        cat = f"/tmp/bench/cat-{name}.yaml"
        a = cpu_ms(cat, env, N1, name)
        b = cpu_ms(cat, env, N2, name)
        per_call_us = (b - a) * 1000 / (N2 - N1)
        results[name].append(per_call_us)
        print(r, name, f"{per_call_us:.2f} µs/call", flush=True)
for name, v in results.items():
    v.sort()
    print(name, "median", f"{v[len(v)//2]:.2f}", "all", [f"{x:.2f}" for x in v])
