"""Benchmark docsync on 1, 2 and 3 processes behind Redis (a script that prints numbers).

    python benchmarks/bench_cluster.py [--redis-url redis://127.0.0.1:6379/9]
        [--database-url postgres://postgres@127.0.0.1:5432/test]

For each process count it starts that many daphne (or uvicorn) processes on
channels-redis and the ORM provider, spreads clients round-robin over them,
and reports the ``dirty`` fan-out latency from one writer's ack to each of
100 readers (p50 / p99), and the sync throughput of 50 clients on their own
documents. The load generator shares the machine's two cores with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import measure_fan_out, measure_throughput, pct, start_server  # noqa: E402


def _test_token(name: str) -> str:
    return f"valid-{name}"  # tests.auth.token_authenticate


async def fan_out(urls, readers_n, rounds) -> list[float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await measure_fan_out(session, urls, readers_n, rounds, _test_token)


async def throughput(urls, clients_n, seconds) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await measure_throughput(session, urls, clients_n, seconds, _test_token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    from tests.liveserver import free_port

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "E2E_REDIS_URL": args.redis_url,
        "E2E_DATABASE_URL": args.database_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_SQUASH_THRESHOLD": "100",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    print(
        f"{args.server}, ORMProvider on {args.database_url.split('@')[-1]}, Redis {args.redis_url}"
    )
    for n in (1, 2, 3):
        ports = [free_port() for _ in range(n)]
        procs = [start_server(args.server, port, env) for port in ports]
        urls = [f"http://127.0.0.1:{port}/socket.io/" for port in ports]
        try:
            lat = asyncio.run(fan_out(urls, args.readers, args.rounds))
            rate = asyncio.run(throughput(urls, args.clients, args.seconds))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
        print(
            f"{n} process(es): fan-out 1 -> {args.readers} readers p50 {pct(lat, 0.5) * 1e3:.1f} ms,"
            f" p99 {pct(lat, 0.99) * 1e3:.1f} ms; {args.clients} clients {rate:,.0f} syncs/s"
        )


if __name__ == "__main__":
    # Stop the servers we started (finally blocks) when killed by timeout(1).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
