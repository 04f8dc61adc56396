"""Exactly once across a crash: uvicorn on PostgreSQL (ORMProvider, and
PostgresProvider's one-statement syncs) is SIGKILLed four times
under 20 writers that resend like the official client (its unconfirmed
operations, with the clock it had, plus what was typed meanwhile). Every
operation ends up stored exactly once, and no writer is sent its own
operations back."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.e2e_db import server_env
from tests.liveserver import LiveServer
from tests.rawws import RawLiveClient
from tests.wsclient import auth

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WRITERS, OPS, KILLS = 20, 60, 4


PROVIDERS = ["docsync.providers.orm.ORMProvider", "docsync.providers.postgres.PostgresProvider"]


class Writer:
    """Types OPS operations into one document the way the official client syncs.

    Unconfirmed operations stay queued until an ack confirms them; every sync
    sends the whole queue with the last acknowledged clock; one sync in flight;
    edits made meanwhile join the next sync. A dropped connection is opened
    again (same clientId) and the queue sent again.
    """

    def __init__(self, server: LiveServer, doc: str, n: int) -> None:
        self.server, self.doc, self.name = server, doc, f"w{n}"
        self.queue: list[list] = []
        self.typed = 0
        self.clock = 0
        self.confirmed = 0
        self.echoed: list = []
        self.client: RawLiveClient | None = None

    async def run(self) -> None:
        while self.typed < OPS or self.queue:
            if self.typed < OPS:
                self.queue.append([self.name, self.typed])
                self.typed += 1
            try:
                await self.sync_once()
            except (ConnectionError, TimeoutError, OSError, ConnectionRefusedError):
                self.client = None
                await asyncio.sleep(0.1)
        await self.client.close()

    async def sync_once(self) -> None:
        if self.client is None:
            client = RawLiveClient(self.server.ws_url)
            await client.connect(auth(self.name, client=f"tab-{self.name}"))
            self.client = client
        sent = list(self.queue)
        request = {
            "type": "doc",
            "docId": self.doc,
            "operations": sent,
            "serializedDoc": None,
            "clock": self.clock,
        }
        res = await self.client.call("sync", request, timeout=5)
        if "data" not in res:
            return  # refused: the official client retries at once
        data = res["data"]
        self.echoed += [op for op in data["operations"] if op in sent]
        self.clock = data["clock"]
        del self.queue[: len(sent)]
        self.confirmed += len(sent)


async def read_all(server: LiveServer, doc: str) -> list:
    reader = RawLiveClient(server.ws_url)
    await reader.connect(auth("reader"))
    res = await reader.call(
        "sync", {"type": "doc", "docId": doc, "operations": [], "serializedDoc": None, "clock": 0}
    )
    await reader.close()
    data = res["data"]
    return [tuple(op) for op in list(data["serializedDoc"] or []) + data["operations"]]


@pytest.mark.parametrize("provider", PROVIDERS, ids=["orm", "postgres"])
async def test_sigkill_under_resending_writers_loses_and_duplicates_nothing(pg_url, provider):
    env = server_env(pg_url, provider)
    server = LiveServer(env=env, server="uvicorn").start()
    servers = [server]
    doc = "01k" + uuid.uuid4().hex[:23]
    writers = [Writer(server, doc, n) for n in range(WRITERS)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    try:
        for kill in range(1, KILLS + 1):
            while sum(w.confirmed for w in writers) < WRITERS * OPS * kill // (KILLS + 1):
                await asyncio.sleep(0.005)
            server.kill()  # SIGKILL: syncs in flight are committed or not, acked or not
            await asyncio.sleep(0.3)
            server = LiveServer(env=env, server="uvicorn", port=server.port).start()
            servers.append(server)
            for w in writers:
                w.server = server
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        values = await read_all(server, doc)
    finally:
        for task in tasks:
            task.cancel()
        for s in servers:
            s.stop()
    resends = sum(s.output().count("not stored again") for s in servers)
    print(f"\n{KILLS} SIGKILLs, {len(values)} operations stored, {resends} resends recognized")
    duplicated = len(values) - len(set(values))
    lost = {(w.name, i) for w in writers for i in range(OPS)} - set(values)
    assert (duplicated, len(lost)) == (0, 0), f"{duplicated} duplicated, {len(lost)} lost"
    assert len(values) == WRITERS * OPS
    for w in writers:
        mine = [i for name, i in values if name == w.name]
        assert mine == sorted(mine), f"{w.name}'s operations out of order"
        assert w.echoed == [], f"{w.name} was sent its own operations back: {w.echoed}"
    assert "Traceback" not in "".join(s.output() for s in servers)
