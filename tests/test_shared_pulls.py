"""Pulls queued together share one read (``DocSyncServer._shared_pull``).

On a provider whose reads take no lock (``PostgresProvider``), identical pulls
that wait for a database thread at the same time get the answer of one read,
which starts after each of them arrived: a pull never misses a write that
committed before it asked.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connections

from docsync.hops import database_executor as _database_executor
from docsync.identity import Identity
from docsync.permissions import allow_all
from docsync.providers.base import Origin
from docsync.providers.postgres import PostgresProvider
from docsync.requests import SyncRequest
from docsync.server import DocSyncServer
from docsync.sync import sync_document
from tests.conftest_db import django_db_on, require_database

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio, django_db_on("postgres")]

IDENTITY = Identity(user_id="u", device_id="d", client_id="c")
ORIGIN = Origin(user_id=None, device_id="d", client_id="c")


class CountingProvider(PostgresProvider):
    def __init__(self, **options):
        super().__init__(**options)
        self.reads = 0

    def sync_step(self, req, origin, **kwargs):
        if not req.operations:
            self.reads += 1
        return super().sync_step(req, origin, **kwargs)


def pull(clock=0) -> SyncRequest:
    return SyncRequest("doc", "doc", [], None, clock)


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """Close the database threads' connections afterwards (the test database goes)."""
    yield
    executor = _database_executor()
    barrier = threading.Barrier(executor._max_workers)

    def close():
        barrier.wait(30)  # one call per thread
        connections.close_all()

    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(loop.run_in_executor(executor, close) for _ in range(executor._max_workers))
    )


async def hold_threads():
    """Keep every database thread busy until the returned event is set."""
    release, busy = threading.Event(), []
    loop = asyncio.get_running_loop()
    executor = _database_executor()
    started = threading.Semaphore(0)

    def work():
        started.release()
        release.wait(30)

    for _ in range(executor._max_workers):
        busy.append(loop.run_in_executor(executor, work))
    for _ in busy:
        await asyncio.to_thread(started.acquire)
    return release, busy


async def test_pulls_queued_together_share_one_read_and_miss_nothing():
    require_database("postgres")
    provider = CountingProvider(using="postgres")
    server = DocSyncServer(provider=provider, authorize=allow_all)
    await server.sync(SyncRequest("doc", "doc", ["a"], None, 0), IDENTITY)
    release, busy = await hold_threads()
    early = [asyncio.ensure_future(server.sync(pull(), IDENTITY)) for _ in range(20)]
    await asyncio.sleep(0.05)  # they all wait for a thread now
    # A write committed while they wait: they, and pulls after it, must see it.
    writer = threading.Thread(
        target=sync_document,
        args=(provider, SyncRequest("doc", "doc", ["b"], None, 1), ORIGIN, server.bindings),
    )
    writer.start()
    await asyncio.to_thread(writer.join)
    late = [asyncio.ensure_future(server.sync(pull(), IDENTITY)) for _ in range(20)]
    await asyncio.sleep(0.05)
    reads_before = provider.reads
    release.set()
    await asyncio.gather(*busy)
    outcomes = await asyncio.gather(*early, *late)
    assert all((o.operations, o.clock) == (["a", "b"], 2) for o in outcomes)
    assert provider.reads - reads_before == 1  # one read answered all 40
    # Different clocks are different reads.
    outcomes = await asyncio.gather(*(server.sync(pull(c), IDENTITY) for c in (0, 1, 2)))
    assert [o.operations for o in outcomes] == [["a", "b"], ["b"], []]
