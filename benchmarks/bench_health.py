"""How long readiness takes to answer: healthy, a dependency down, a dependency hanging.

    python benchmarks/bench_health.py [--database-url postgres://postgres@127.0.0.1:5432/test]
        [--redis-url redis://127.0.0.1:6379/9] [--timeout 1.0] [--probes 50]

Starts one uvicorn process per case (tests.e2e_settings: the given
PostgreSQL and Redis, or a closed port, or a port that accepts and never
answers) and prints the p50 / p99 / max answer time of ``health/ready/``
over ``--probes`` sequential probes, and of ``health/live/``. The probes
share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import pct, start_server  # noqa: E402

from tests.liveserver import free_port  # noqa: E402


def probe(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, (time.perf_counter() - started) * 1000


def run_case(name: str, database_url: str, redis_url: str, args) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "E2E_DATABASE_URL": database_url,
        "E2E_REDIS_URL": redis_url,
        "E2E_HEALTH_TIMEOUT": str(args.timeout),
    }
    proc = start_server("uvicorn", port, env)
    try:
        base = f"http://127.0.0.1:{port}/health"
        probe(f"{base}/ready/")  # warm up
        for kind in ("ready", "live"):
            results = [probe(f"{base}/{kind}/") for _ in range(args.probes)]
            times = sorted(ms for _, ms in results)
            statuses = sorted({status for status, _ in results})
            print(
                f"{name:<16} {kind:<5} status {statuses}  p50 {pct(times, 0.5):7.1f} ms  "
                f"p99 {pct(times, 0.99):7.1f} ms  max {times[-1]:7.1f} ms"
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    closed = free_port()
    with socket.socket() as silent_db, socket.socket() as silent_redis:
        for listener in (silent_db, silent_redis):
            listener.bind(("127.0.0.1", 0))
            listener.listen(512)
        hang_db = f"postgres://postgres@127.0.0.1:{silent_db.getsockname()[1]}/x"
        hang_redis = f"redis://127.0.0.1:{silent_redis.getsockname()[1]}/0"
        print(f"HEALTH_TIMEOUT {args.timeout:g} s, {args.probes} sequential probes per row")
        run_case("healthy", args.database_url, args.redis_url, args)
        run_case("database down", f"postgres://postgres@127.0.0.1:{closed}/x", args.redis_url, args)
        run_case("redis down", args.database_url, f"redis://127.0.0.1:{closed}/0", args)
        run_case("database hangs", hang_db, args.redis_url, args)
        run_case("both hang", hang_db, hang_redis, args)


if __name__ == "__main__":
    main()
