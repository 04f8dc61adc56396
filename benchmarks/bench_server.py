"""Benchmark a running docsync server (a script that prints numbers).

    python benchmarks/bench_server.py                       # starts its own server
    python benchmarks/bench_server.py --server uvicorn      # ... on uvicorn
    python benchmarks/bench_server.py --url ws://127.0.0.1:8000/socket.io/ --token TOKEN

Reports sync round-trip p50 / p99 and syncs per second for one client, syncs
per second for N clients each on its own document, and the ``dirty`` fan-out
latency from one writer's ack to each of N readers. The load generator is a
minimal raw Engine.IO client on aiohttp (cheaper than python-socketio's), in
one process, sharing the machine's cores with the server: compare runs, not
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class RawClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, name: str):
        self.session, self.url, self.token, self.name = session, url, token, name
        self.ack = 0
        self.waiters: dict[int, asyncio.Future] = {}
        self.dirty_at: list[float] = []
        self.dirty_event = asyncio.Event()

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(
            self.url + "?EIO=4&transport=websocket", autoping=False
        )
        await self.ws.receive()  # OPEN
        auth = {"deviceId": f"dev-{self.name}", "clientId": f"cli-{self.name}", "token": self.token}
        await self.ws.send_str("40" + json.dumps(auth))
        while True:
            msg = (await self.ws.receive()).data
            if msg.startswith("42") and "identity" in msg:
                break
            if msg.startswith("44"):
                raise RuntimeError(msg)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.PING:  # uvicorn's, every 20 s (autoping is off)
                await self.ws.pong(msg.data)
                continue
            data = msg.data
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith("43"):
                i = 2
                while data[i].isdigit():
                    i += 1
                fut = self.waiters.pop(int(data[2:i]), None)
                if fut is not None:
                    fut.set_result(data[i:])
            elif data.startswith('42["dirty"'):
                self.dirty_at.append(time.perf_counter())
                self.dirty_event.set()

    async def sync(self, doc: str, ops: list, clock: int = 0) -> dict:
        self.ack += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.ack] = fut
        payload = {
            "type": "doc",
            "docId": doc,
            "operations": ops,
            "serializedDoc": None,
            "clock": clock,
        }
        await self.ws.send_str(f"42{self.ack}" + json.dumps(["sync", payload]))
        return json.loads(await fut)[0]

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds the process ``pid`` has used (0 when unknown)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_sync(args, cpu_before: float, syncs: int) -> str:
    """``, server CPU N µs per sync`` (CPU time counts less of the machine's load than
    wall time: compare it across runs on a busy machine)."""
    if not args.pid or not syncs:
        return ""
    return f", server CPU {(cpu_seconds(args.pid) - cpu_before) / syncs * 1e6:,.0f} µs per sync"


async def one_client(session, args) -> None:
    c = RawClient(session, args.url, args.token_for("solo"), "solo")
    await c.connect()
    doc = "bench-solo"
    clock = (await c.sync(doc, []))["data"]["clock"]
    latencies = []
    cpu_before = cpu_seconds(args.pid)
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        res = await c.sync(doc, [["op", clock]], clock)
        latencies.append(time.perf_counter() - t0)
        clock = res["data"]["clock"]
    await c.close()
    n = len(latencies)
    print(
        f"1 client: {n / args.seconds:,.0f} syncs/s, round trip p50 {pct(latencies, 0.5) * 1e3:.2f} ms,"
        f" p99 {pct(latencies, 0.99) * 1e3:.2f} ms ({n} syncs){cpu_per_sync(args, cpu_before, n)}"
    )


async def measure_throughput(session, urls, clients_n, seconds, token_for) -> float:
    """Syncs per second of ``clients_n`` closed-loop clients, each on its own document."""
    clients = [
        RawClient(session, urls[i % len(urls)], token_for(f"m{i}"), f"m{i}")
        for i in range(clients_n)
    ]
    for c in clients:
        await c.connect()
    counts = [0] * clients_n
    stop = time.perf_counter() + seconds

    async def loop(i: int, c: RawClient) -> None:
        doc = f"bench-many-{time.time_ns()}-{i}"
        clock = (await c.sync(doc, []))["data"]["clock"]
        while time.perf_counter() < stop:
            clock = (await c.sync(doc, [["op", clock]], clock))["data"]["clock"]
            counts[i] += 1

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(clients)))
    for c in clients:
        await c.close()
    return sum(counts) / seconds


async def many_clients(session, args) -> None:
    cpu_before = cpu_seconds(args.pid)
    rate = await measure_throughput(session, [args.url], args.clients, args.seconds, args.token_for)
    cpu = cpu_per_sync(args, cpu_before, int(rate * args.seconds))
    print(f"{args.clients} clients, own documents: {rate:,.0f} syncs/s{cpu}")


async def measure_fan_out(session, urls, readers_n, rounds, token_for) -> list[float]:
    """Seconds from the writer's ack to each reader's ``dirty``, readers spread over ``urls``."""
    doc = f"bench-fanout-{time.time_ns()}"
    writer = RawClient(session, urls[0], token_for("writer"), "writer")
    readers = [
        RawClient(session, urls[i % len(urls)], token_for(f"r{i}"), f"r{i}")
        for i in range(readers_n)
    ]
    for c in [writer, *readers]:
        await c.connect()
        await c.sync(doc, [])
    latencies = []
    for round_ in range(rounds):
        for r in readers:
            r.dirty_event.clear()
            r.dirty_at.clear()
        await writer.sync(doc, [["w", round_]], 0)
        acked = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(r.dirty_event.wait() for r in readers)), 20)
        latencies.extend(r.dirty_at[0] - acked for r in readers)
    for c in [writer, *readers]:
        await c.close()
    return latencies


async def fan_out(session, args) -> None:
    latencies = await measure_fan_out(
        session, [args.url], args.clients, args.rounds, args.token_for
    )
    print(
        f"dirty fan-out, 1 writer -> {args.clients} readers: p50 {pct(latencies, 0.5) * 1e3:.2f} ms,"
        f" p99 {pct(latencies, 0.99) * 1e3:.2f} ms, mean {statistics.mean(latencies) * 1e3:.2f} ms"
        f" ({args.rounds} rounds)"
    )


def start_server(kind: str, port: int, env: dict) -> subprocess.Popen:
    from tests.liveserver import wait_for_port

    app = "tests.e2e_asgi:application"
    if kind == "uvicorn":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "10",
            "--ws-per-message-deflate",
            "false",
        ]
    else:
        cmd = [sys.executable, "-m", "daphne", "-v", "0", "-p", str(port), app]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=proc)
    return proc


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def connections(session, args) -> None:
    """Time to connect N clients, and the server's memory per idle connection."""
    before = rss_kb(args.pid) if args.pid else 0
    clients = [
        RawClient(session, args.url, args.token_for(f"c{i}"), f"c{i}") for i in range(args.idle)
    ]
    t0 = time.perf_counter()
    for c in clients:
        await c.connect()
    elapsed = time.perf_counter() - t0
    line = f"{args.idle} connects: {elapsed:.2f} s"
    if args.pid:
        after = rss_kb(args.pid)
        line += f"; server RSS {before / 1024:.0f} -> {after / 1024:.0f} MB, {(after - before) / args.idle:.0f} KB per idle connection"
    print(line)
    for c in clients:
        await c.close()


async def main(args) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await one_client(session, args)
        await many_clients(session, args)
        await fan_out(session, args)
        await connections(session, args)


if __name__ == "__main__":
    # Stop the servers we started (finally blocks) when killed by timeout(1).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="ws://host:port/socket.io/ of a running server")
    parser.add_argument("--token", help="token for every client (default: valid-<name>, test auth)")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--provider", default="docsync.providers.memory.InMemoryProvider")
    parser.add_argument("--database-url", help="DATABASE_URL for the started server (ORM provider)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--idle", type=int, default=500, help="idle connections for the memory figure"
    )
    args = parser.parse_args()
    args.token_for = (lambda name: args.token) if args.token else (lambda name: f"valid-{name}")
    proc = None
    args.pid = None
    if not args.url:
        from tests.liveserver import free_port

        port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
            "E2E_PROVIDER": args.provider,
            "E2E_SQUASH_THRESHOLD": "0",
        }
        if args.database_url:
            env["E2E_DATABASE_URL"] = args.database_url
        proc = start_server(args.server, port, env)
        args.pid = proc.pid
        args.url = f"http://127.0.0.1:{port}/socket.io/"
        print(f"server: {args.server}, provider {args.provider.rsplit('.', 1)[-1]}")
    try:
        asyncio.run(main(args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
