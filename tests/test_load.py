"""Many writers on one document through the real server on PostgreSQL, with
squashing going on: nothing acknowledged is lost or duplicated, each writer's
operations stay in its order, also across a server restart. On the ORM
provider and on PostgresProvider (one statement per sync, unlocked pulls)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.e2e_db import server_env
from tests.liveserver import LiveServer
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WRITERS, OPS = 20, 50


PROVIDERS = ["docsync.providers.orm.ORMProvider", "docsync.providers.postgres.PostgresProvider"]


@pytest.fixture(params=PROVIDERS, ids=["orm", "postgres"])
def provider(request) -> str:
    return request.param


async def writer(url: str, doc: str, n: int, acked: list, stop_on_error: bool = False) -> None:
    client = await Client(url, f"w{n}", device=f"dev-w{n}").connect()
    clock = 0
    try:
        for i in range(OPS):
            try:
                res = await client.sync(doc, operations=[[f"w{n}", i]], clock=clock)
            except Exception:
                if stop_on_error:
                    return
                raise
            assert "data" in res, res
            clock = res["data"]["clock"]
            acked.append((f"w{n}", i))
    finally:
        if client.sio.connected:
            await client.close()


async def read_all(url: str, doc: str) -> list:
    reader = await Client(url, "reader").connect()
    res = await reader.sync(doc)
    await reader.close()
    data = res["data"]
    return list(data["serializedDoc"] or []) + list(data["operations"])


def check(ops: list, acked: list) -> None:
    values = [tuple(op) for op in ops]
    assert len(values) == len(set(values)), "an operation was duplicated"
    missing = set(acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged operations lost"
    for n in range(WRITERS):
        mine = [i for w, i in values if w == f"w{n}"]
        assert mine == sorted(mine), f"writer w{n}'s operations out of order"


async def test_concurrent_writers_with_squashing(pg_url, provider):
    server = LiveServer(env=server_env(pg_url, provider)).start()
    doc = "01k" + uuid.uuid4().hex[:23]
    try:
        acked: list = []
        await asyncio.gather(*(writer(server.url, doc, n, acked) for n in range(WRITERS)))
        assert len(acked) == WRITERS * OPS
        ops = await read_all(server.url, doc)
        assert len(ops) == WRITERS * OPS
        check(ops, acked)
    finally:
        server.stop()
    assert "squashing" not in server.output(), server.output()


async def test_restart_mid_run_loses_nothing_acknowledged(pg_url, provider):
    server = LiveServer(env=server_env(pg_url, provider)).start()
    doc = "01k" + uuid.uuid4().hex[:23]
    acked: list = []
    tasks = [
        asyncio.create_task(writer(server.url, doc, n, acked, stop_on_error=True))
        for n in range(WRITERS)
    ]
    while len(acked) < WRITERS * OPS // 3:
        await asyncio.sleep(0.01)
    server.stop()  # SIGTERM mid-run
    await asyncio.gather(*tasks, return_exceptions=True)
    restarted = LiveServer(env=server_env(pg_url, provider), port=server.port).start()
    try:
        ops = await read_all(restarted.url, doc)
        check(ops, acked)
    finally:
        restarted.stop()
