"""Webhooks from a real server process (uvicorn on PostgreSQL) to a real receiver
(aiohttp, in the test): signed, debounced, every event once across an outage,
and a change committed just before a crash still announced."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

import pytest

from tests.e2e_db import server_env
from tests.liveserver import LiveServer, manage
from tests.sioclient import Client
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PROVIDERS = ["docsync.providers.orm.ORMProvider", "docsync.providers.postgres.PostgresProvider"]

#: Short periods so that the tests take seconds: quiet 1 s, retries from 0.2 s up to 1 s.
FAST = {
    "WEBHOOK_QUIET": 1.0,
    "WEBHOOK_POLL_INTERVAL": 0.1,
    "WEBHOOK_RETRY_DELAY": 0.2,
    "WEBHOOK_RETRY_MAX_DELAY": 1.0,
    "WEBHOOK_TIMEOUT": 2.0,
}


def webhook_env(pg_url: str, provider: str, receiver: Receiver, **docsync) -> dict[str, str]:
    env = server_env(pg_url, provider)
    env["E2E_DOCSYNC"] = json.dumps({"WEBHOOKS": [receiver.settings()], **FAST, **docsync})
    return env


async def type_into(client: Client, doc_id: str, n: int, clock: int = 0) -> int:
    """Sync ``n`` batches of one operation each into ``doc_id``; return the last clock."""
    for i in range(n):
        res = await client.sync(doc_id, operations=[[doc_id, i]], clock=clock)
        clock = res["data"]["clock"]
    return clock


def duplicates(receiver: Receiver) -> list[str]:
    return [i for i, n in Counter(e["id"] for e in receiver.events).items() if n > 1]


@pytest.fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.mark.parametrize("provider", PROVIDERS, ids=["orm", "postgres"])
async def test_events_are_signed_debounced_and_complete(pg_url, provider, receiver):
    server = LiveServer(webhook_env(pg_url, provider, receiver), server="uvicorn").start()
    doc = f"hooks-{provider.rsplit('.', 1)[1]}"
    try:
        client = await Client(server.url, "alice").connect()
        last = await type_into(client, doc, 20)
        await receiver.wait_for(lambda r: r.of("document.changed", doc_id=doc, clock=last))
        await client.call("delete-doc", {"docId": doc})
        await receiver.wait_for(lambda r: r.of("document.deleted", doc_id=doc))
        await client.close()
        await receiver.wait_for(lambda r: r.of("client.disconnected", client_id="cli-alice"))
    finally:
        server.stop()
    changed = receiver.of("document.changed", doc_id=doc)
    # Debounced: far fewer calls than the 20 syncs, the last with the last clock.
    assert len(changed) < 20
    assert changed[-1]["data"] == {
        "doc_id": doc,
        "doc_type": "doc",
        "clock": last,
        "previous_clock": changed[-2]["data"]["clock"] if len(changed) > 1 else 0,
    }
    assert receiver.of("document.deleted", doc_id=doc)[0]["data"]["clock"] == last
    connected = receiver.of("client.connected", client_id="cli-alice")
    assert [e["data"]["user_id"] for e in connected] == ["alice"]
    assert receiver.of("client.disconnected")[0]["data"]["reason"]
    assert receiver.bad_signatures == 0 and not duplicates(receiver)


@pytest.mark.parametrize("provider", PROVIDERS, ids=["orm", "postgres"])
async def test_every_event_arrives_once_after_the_receiver_was_down(pg_url, provider, receiver):
    server = LiveServer(webhook_env(pg_url, provider, receiver), server="uvicorn").start()
    docs = [f"outage-{provider.rsplit('.', 1)[1]}-{i}" for i in range(5)]
    try:
        first = await Client(server.url, "bob").connect()
        await receiver.wait_for(lambda r: r.of("client.connected", client_id="cli-bob"))
        await receiver.stop()  # down for 5 s, while documents change
        clocks = {doc: await type_into(first, doc, 3) for doc in docs}
        await first.call("delete-doc", {"docId": docs[0]})
        others = [await Client(server.url, f"u{i}").connect() for i in range(3)]
        for client in others:
            await client.close()
        await asyncio.sleep(5)
        await receiver.start()

        def complete(r: Receiver) -> bool:
            changed = all(r.of("document.changed", doc_id=d, clock=clocks[d]) for d in docs[1:])
            gone = r.of("document.deleted", doc_id=docs[0])
            return changed and gone and len(r.of("client.disconnected")) == 3

        await receiver.wait_for(complete, timeout=30)
        await first.close()
        await receiver.wait_for(lambda r: len(r.of("client.disconnected")) == 4)
    finally:
        server.stop()
    assert not duplicates(receiver)
    assert len(receiver.of("client.connected")) == 4
    for doc in docs[1:]:  # quiet 1 s: each document's three syncs in one event
        assert [e["data"]["clock"] for e in receiver.of("document.changed", doc_id=doc)] == [3]
    assert receiver.bad_signatures == 0


async def test_a_change_committed_before_a_crash_is_announced(pg_url, receiver):
    """SIGKILL right after the syncs (in the quiet period): the worker's sweep finds
    the document's row ahead of its cursor and sends the event."""
    provider = "docsync.providers.postgres.PostgresProvider"
    env = webhook_env(pg_url, provider, receiver, WEBHOOK_QUIET=30.0)
    server = LiveServer(env, server="uvicorn").start()
    try:
        client = await Client(server.url, "carol").connect()
        last = await type_into(client, "crash-doc", 5)
    finally:
        server.stop(signal.SIGKILL)
    assert not receiver.of("document.changed", doc_id="crash-doc")
    worker = {**env, "E2E_DOCSYNC": json.dumps({"WEBHOOKS": [receiver.settings()], **FAST})}
    await asyncio.to_thread(manage, "docsync_webhooks", "--until-idle", env=worker)
    assert [e["data"]["clock"] for e in receiver.of("document.changed", doc_id="crash-doc")] == [
        last
    ]


async def test_workers_share_the_outbox_without_sending_twice(pg_url, receiver):
    """Three ``manage.py docsync_webhooks`` at once on 300 events (FOR UPDATE SKIP LOCKED)."""
    env = server_env(pg_url, "docsync.providers.orm.ORMProvider")
    env["E2E_DOCSYNC"] = json.dumps({"WEBHOOKS": [receiver.settings()], **FAST})
    script = (
        "from docsync.webhooks import enqueue\n"
        "for i in range(300):\n"
        "    enqueue('client.connected', {'n': i})\n"
    )
    await asyncio.to_thread(manage, "shell", "-c", script, env=env)
    workers = [
        asyncio.to_thread(manage, "docsync_webhooks", "--until-idle", env=env) for _ in range(3)
    ]
    await asyncio.gather(*workers)
    assert sorted(e["data"]["n"] for e in receiver.events) == list(range(300))
    assert not duplicates(receiver)
