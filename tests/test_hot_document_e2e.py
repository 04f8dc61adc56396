"""A hot document on two server processes (PostgresProvider, Redis), with
squashing: writers on both, every client pulling on ``dirty`` as the
official client does. Pulls are answered from the processes' memory of the
document's newest batches (``docsync.providers.tail``) and from the
database; whichever answers, every client ends up holding every
acknowledged operation exactly once, and so does the log."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.e2e_db import server_env
from tests.liveserver import LiveServer
from tests.sioclient import Client
from tests.test_multiprocess import redis_proc  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.asyncio]

WRITERS, OPS = 12, 15


class Replica:
    """A client's copy of the document: one sync in flight, another after a ``dirty``.

    Its document (``seen``, a ``ListBinding`` list) goes with every sync.
    """

    def __init__(self, client: Client, doc: str):
        self.client, self.doc = client, doc
        self.clock = 0
        self.seen: list = []
        self.unsent: list = []
        self.acked: list = []
        self.busy = False
        self.again = False
        self.idle = asyncio.Event()
        self.idle.set()
        client.sio.on("dirty", self._dirty)

    async def _dirty(self, data) -> None:
        self.schedule()

    def schedule(self) -> None:
        if self.busy:
            self.again = True
            return
        self.busy = True
        self.idle.clear()
        asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.again = False
                ops, self.unsent = self.unsent, []
                # The whole document in every sync, as the official client sends it.
                whole = [list(op) for op in self.seen]
                res = await self.client.sync(self.doc, ops, whole, clock=self.clock)
                assert "data" in res, res
                if res["data"]["serializedDoc"] is not None:  # newer than our clock
                    self.seen = [tuple(op) for op in res["data"]["serializedDoc"]]
                self.seen.extend(tuple(op) for op in res["data"]["operations"])
                self.seen.extend(tuple(op) for op in ops)
                self.acked.extend(tuple(op) for op in ops)
                self.clock = res["data"]["clock"]
                if not (self.again or self.unsent):
                    break
        finally:
            self.busy = False
            self.idle.set()

    async def type(self, name: str) -> None:
        for i in range(OPS):
            self.unsent.append([name, i])
            self.schedule()
            await asyncio.sleep(0)
            while self.unsent or self.busy:
                await self.idle.wait()


@pytest.fixture
def servers(redis_proc, pg_url):  # noqa: F811
    env = {
        **server_env(pg_url, "docsync.providers.postgres.PostgresProvider"),
        "E2E_REDIS_URL": redis_proc.url,
    }
    started = [LiveServer(env=env, server="uvicorn").start() for _ in range(2)]
    yield started
    for server in started:
        server.stop()
        print(server.output())  # shown when the test failed


async def test_every_client_of_a_hot_document_holds_every_acknowledged_operation_once(servers):
    doc = "01k" + uuid.uuid4().hex[:23]
    clients = [
        await Client(servers[n % 2].url, f"w{n}", device=f"dev-w{n}").connect()
        for n in range(WRITERS)
    ]
    replicas = [Replica(c, doc) for c in clients]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(r.type(f"w{n}") for n, r in enumerate(replicas))), 120
        )
        for r in replicas:  # everyone catches up
            r.schedule()
        await asyncio.gather(*(r.idle.wait() for r in replicas))
        acked = {op for r in replicas for op in r.acked}
        assert len(acked) == WRITERS * OPS
        # A pull on one process may be answered just before the dirty of the
        # other's last write arrives; that dirty makes the client pull again.
        deadline = asyncio.get_running_loop().time() + 10
        while any(set(r.seen) != acked or r.busy for r in replicas):
            assert asyncio.get_running_loop().time() < deadline, "no convergence in 10 s"
            await asyncio.sleep(0.02)
        for n, r in enumerate(replicas):
            assert len(r.seen) == len(set(r.seen)), f"w{n} holds an operation twice"
            assert set(r.seen) == acked, f"w{n} misses {len(acked - set(r.seen))} operations"
        fresh = await Client(servers[n % 2].url, "fresh").connect()
        try:
            data = (await fresh.sync(doc))["data"]
        finally:
            await fresh.close()
        log = [tuple(op) for op in list(data["serializedDoc"] or []) + data["operations"]]
        assert len(log) == len(set(log)) and set(log) == acked
    finally:
        for c in clients:
            await c.close()
    for server in servers:
        assert "Traceback" not in server.output(), server.output()
