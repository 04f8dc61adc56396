"""REST API latency and throughput on PostgreSQL (a script that prints numbers).

    python benchmarks/bench_rest.py [--database-url postgres://postgres@127.0.0.1:5432/postgres]
        [--server uvicorn] [--provider docsync.providers.orm.ORMProvider] [--port 22100]
        [--documents 1000] [--seconds 5] [--concurrency 8]

Makes a database of its own on the server of ``--database-url`` (dropped
at the end), migrates it, creates one user with a DRF token and
``--documents`` documents of the list binding (one batch each), starts one
server process, and prints one JSON line per scenario:

* ``retrieve``: ``GET documents/{id}/`` (authorize, read, fold the pending
  batches, render), sequential p50 / p99, then requests per second from
  ``--concurrency`` clients on different documents;
* ``apply``: ``POST documents/{id}/operations/`` (one batch through the
  sync), the same, the concurrent clients on different documents, then on
  one document (they queue on its row lock);
* ``list``: ``GET documents/`` (a page of 50 of ``--documents``), p50 / p99.

The load generator shares the machine with the server and the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.liveserver import LiveServer, manage  # noqa: E402

SETUP = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from docsync import api
user = get_user_model().objects.create_user("bench")
for n in range(%(documents)d):
    api.create_document(f"doc-{n}", "doc", user=user, operations=[n])
print(json.dumps({"token": Token.objects.create(user=user).key}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(scenario: str, latencies: list[float], **extra: object) -> None:
    line = {
        "scenario": scenario,
        "requests": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        **extra,
    }
    print(json.dumps(line), flush=True)


async def timed(session: aiohttp.ClientSession, method: str, url: str, body=None) -> float:
    started = time.perf_counter()
    async with session.request(method, url, json=body) as response:
        await response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {await response.text()}")
    return time.perf_counter() - started


async def sequential(session, method: str, urls: list[str], body=None) -> list[float]:
    return [await timed(session, method, url, body) for url in urls]


async def throughput(session, method: str, urls: list[str], seconds: float, body=None) -> float:
    """Requests per second, one worker per URL, for ``seconds``."""
    deadline, done = time.perf_counter() + seconds, [0]

    async def worker(url: str) -> None:
        while time.perf_counter() < deadline:
            await timed(session, method, url, body)
            done[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(url) for url in urls))
    return done[0] / (time.perf_counter() - started)


async def run(base: str, token: str, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Token {token}"}
    docs = [f"{base}/documents/doc-{n}/" for n in range(min(args.documents, 200))]
    ops = [f"{url}operations/" for url in docs]
    body = {"operations": ["x"]}
    async with aiohttp.ClientSession(headers=headers) as session:
        await sequential(session, "GET", docs[:20])  # warm up
        report("retrieve", await sequential(session, "GET", docs))
        rate = await throughput(session, "GET", docs[: args.concurrency], args.seconds)
        print(json.dumps({"scenario": "retrieve", "clients": args.concurrency, "rps": round(rate)}))
        report("apply", await sequential(session, "POST", ops, body))
        rate = await throughput(session, "POST", ops[: args.concurrency], args.seconds, body)
        print(json.dumps({"scenario": "apply", "clients": args.concurrency, "rps": round(rate)}))
        rate = await throughput(session, "POST", [ops[0]] * args.concurrency, args.seconds, body)
        one = {"scenario": "apply", "clients": args.concurrency, "documents": 1, "rps": round(rate)}
        print(json.dumps(one))
        listing = [f"{base}/documents/?page={1 + n % 5}" for n in range(100)]
        report("list", await sequential(session, "GET", listing), documents=args.documents)


def database(url: str) -> tuple[dict, str]:
    parsed = urlparse(url)
    admin = {
        "host": parsed.hostname,
        "port": parsed.port or 5432,
        "user": parsed.username,
        "dbname": parsed.path.lstrip("/") or "postgres",
        "autocommit": True,
    }
    name = f"docsync_bench_{uuid.uuid4().hex[:8]}"
    return admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "daphne"])
    parser.add_argument("--provider", default="docsync.providers.orm.ORMProvider")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    import psycopg

    admin, name = database(args.database_url)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://{admin['user']}@{admin['host']}:{admin['port']}/{name}"
    env = {
        "E2E_DATABASE_URL": url,
        "E2E_PROVIDER": args.provider,
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
        "E2E_BINDINGS": json.dumps({"doc": "tests.bindings.ListBinding"}),
        "E2E_SQUASH_THRESHOLD": "100",
    }
    server = None
    try:
        manage("migrate", "-v", "0", env=env)
        out = manage("shell", "-c", SETUP % {"documents": args.documents}, env=env)
        token = json.loads(out.strip().splitlines()[-1])["token"]
        settings = os.environ.get("DJANGO_SETTINGS_MODULE", "tests.e2e_settings")
        server = LiveServer(
            env={**os.environ, **env}, server=args.server, port=args.port, settings=settings
        ).start()
        print(json.dumps({"server": args.server, "provider": args.provider}), flush=True)
        asyncio.run(run(f"{server.url}/api/docsync", token, args))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_rest: {exc.cmd} failed:\n{exc.stderr}")
    except RuntimeError:
        if server is not None:
            print(server.output()[-6000:], file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
