"""Webhook delivery from a real server (uvicorn, PostgreSQL) to a real receiver.

    python benchmarks/bench_webhooks.py                      # PostgresProvider, 60 s outage
    python benchmarks/bench_webhooks.py --outage 10 --docs 10 --provider orm

Prints one JSON line per scenario:

* ``latency``: ``--docs`` clients each type a burst of ``--burst`` syncs into
  their own document, ``--rounds`` times with a pause longer than the quiet
  period; for every burst, the seconds from the burst's last ack to its
  ``document.changed`` (with that clock) arriving, minus ``WEBHOOK_QUIET``
  (p50 / p95 / max): what the debounce adds on top of the quiet period.
* ``outage``: the receiver is stopped for ``--outage`` seconds while the
  clients keep typing, connecting and disconnecting; then started again and
  nothing else happens. Seconds from the restart to the last event, events
  written to the outbox vs received (distinct ids), duplicates, and whether
  each document's last clock arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.liveserver import LiveServer, manage  # noqa: E402
from tests.sioclient import Client  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402

PROVIDERS = {
    "orm": "docsync.providers.orm.ORMProvider",
    "postgres": "docsync.providers.postgres.PostgresProvider",
}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def create_database(admin_url: str) -> str:
    import psycopg

    name = f"docsync_webhooks_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    manage("migrate", "-v", "0", env={"E2E_DATABASE_URL": url})
    return url


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def outbox_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM docsync_webhookdelivery").fetchone()[0]


class Typist:
    """One client typing bursts into its own document."""

    def __init__(self, server: LiveServer, n: int) -> None:
        self.server, self.doc, self.name = server, f"wh-{n}", f"typist{n}"
        self.clock = 0
        self.client: Client | None = None

    async def burst(self, syncs: int) -> tuple[int, float]:
        """Type ``syncs`` syncs; return the last clock and when it was acknowledged."""
        if self.client is None:
            self.client = await Client(self.server.url, self.name).connect()
        for i in range(syncs):
            res = await self.client.sync(self.doc, operations=[[self.name, i]], clock=self.clock)
            self.clock = res["data"]["clock"]
        return self.clock, time.monotonic()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


async def latency(server, receiver, typists, args) -> dict:
    waits: list[float] = []
    for _ in range(args.rounds):
        acks = await asyncio.gather(*(t.burst(args.burst) for t in typists))
        for typist, (clock, acked) in zip(typists, acks, strict=True):
            doc = typist.doc
            await receiver.wait_for(
                lambda r, d=doc, c=clock: r.of("document.changed", doc_id=d, clock=c), timeout=60
            )
            i = next(
                i
                for i, e in enumerate(receiver.events)
                if e["type"] == "document.changed"
                and e["data"]["doc_id"] == doc
                and e["data"]["clock"] == clock
            )
            waits.append(receiver.arrived[i] - acked - args.quiet)
        await asyncio.sleep(args.quiet + 1)
    changed = [e for e in receiver.events if e["type"] == "document.changed"]
    return {
        "scenario": "latency",
        "bursts": len(waits),
        "syncs_per_burst": args.burst,
        "document_changed_received": len(changed),
        "after_quiet_p50_s": pct(waits, 0.5),
        "after_quiet_p95_s": pct(waits, 0.95),
        "after_quiet_max_s": round(max(waits), 3),
        "quiet_s": args.quiet,
    }


async def outage(server, receiver, typists, args, url) -> dict:
    before = len(receiver.events)
    await receiver.stop()
    down_at = time.monotonic()
    finals: dict[str, int] = {}
    visitors = 0
    while time.monotonic() - down_at < args.outage:
        acks = await asyncio.gather(*(t.burst(args.burst) for t in typists))
        for typist, (clock, _) in zip(typists, acks, strict=True):
            finals[typist.doc] = clock
        visitor = await Client(server.url, f"visitor{visitors}").connect()
        await visitor.close()
        visitors += 1
        await asyncio.sleep(
            min(args.quiet + 1, max(0.0, args.outage - (time.monotonic() - down_at)))
        )
    await asyncio.sleep(args.quiet + 1)  # the last bursts' events are written
    written = outbox_rows(url)
    await receiver.start()
    up_at = time.monotonic()

    def done(r: Receiver) -> bool:
        return len({e["id"] for e in r.events}) >= written

    try:
        await receiver.wait_for(done, timeout=args.outage * 3 + 120)
    except TimeoutError:
        pass
    ids = Counter(e["id"] for e in receiver.events)
    arrived_late = receiver.arrived[before:]
    last = {
        d: max((e["data"]["clock"] for e in receiver.of("document.changed", doc_id=d)), default=0)
        for d in finals
    }
    return {
        "scenario": "outage",
        "down_s": round(up_at - down_at, 1),
        "visitors": visitors,
        "outbox_rows": written,
        "received_distinct": len(ids),
        "duplicates": sum(n - 1 for n in ids.values()),
        "missing": written - len(ids),
        "every_last_clock_arrived": all(last[d] == c for d, c in finals.items()),
        "recovered_after_s": round(max(arrived_late) - up_at, 2) if arrived_late else None,
        "received_after_restart": sum(1 for t in arrived_late if t >= up_at),
    }


async def run(args) -> None:
    url = create_database(args.admin_url)
    receiver = await Receiver().start()
    docsync = {"WEBHOOKS": [receiver.settings()], "WEBHOOK_QUIET": args.quiet}
    env = {
        "E2E_DATABASE_URL": url,
        "E2E_PROVIDER": PROVIDERS[args.provider],
        "E2E_BINDINGS": json.dumps({"doc": "tests.bindings.ListBinding"}),
        "E2E_DOCSYNC": json.dumps(docsync),
    }
    server = LiveServer(env, server="uvicorn").start()
    typists = [Typist(server, n) for n in range(args.docs)]
    try:
        print(json.dumps({"provider": args.provider, "docs": args.docs}), flush=True)
        print(json.dumps(await latency(server, receiver, typists, args)), flush=True)
        print(json.dumps(await outage(server, receiver, typists, args, url)), flush=True)
    finally:
        await asyncio.gather(*(t.close() for t in typists))
        server.stop()
        await receiver.stop()
        drop_database(args.admin_url, url)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="postgres")
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quiet", type=float, default=2.0)
    parser.add_argument("--outage", type=float, default=60.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
