"""Squashing driven by the server: after the ack, by the log's length."""

import asyncio
import json
import logging

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.bindings import ListBinding
from tests.wsclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
DOC = "01k0000000000000000000squ1"


def make_server(threshold=3):
    return DocSyncServer(
        doc_binding={"doc": ListBinding()},
        provider=InMemoryProvider(),
        authenticate=token_authenticate,
        authorize=lambda event: True,
        squash_threshold=threshold,
    )


async def sync(client, ack, ops, clock, snapshot=None):
    payload = {
        "type": "doc",
        "docId": DOC,
        "operations": ops,
        "serializedDoc": snapshot,
        "clock": clock,
    }
    await client.send(f"42{ack}" + json.dumps(["sync", payload]))
    while True:
        frame = await client.recv()
        if frame.startswith(f"43{ack}"):
            return json.loads(frame[len(f"43{ack}") :])[0]


async def settle(server):
    while server._tasks:
        await asyncio.gather(*list(server._tasks))


def stored(server):
    with server.provider.transaction("readonly", DOC) as tx:
        record = tx.get_serialized_doc()
        return record, tx.get_operations(record.clock)


async def test_log_is_squashed_after_the_threshold_and_late_joiner_gets_snapshot():
    server = make_server(threshold=3)
    app = DocSyncConsumer.as_asgi(server=server)
    writer = RawClient(app)
    await writer.connect("alice")
    clock = 0
    for i in range(3):
        clock = (await sync(writer, i, [f"op{i}"], clock))["data"]["clock"]
    await settle(server)
    record, batches = stored(server)
    assert record.serialized_doc == ["op0", "op1", "op2"]
    assert record.clock == 3 and batches == []
    clock = (await sync(writer, 9, ["op3"], clock))["data"]["clock"]
    joiner = RawClient(app)
    await joiner.connect("bob")
    res = await sync(joiner, 1, [], 0)
    assert res["data"] == {
        "docId": DOC,
        "operations": ["op3"],
        "serializedDoc": ["op0", "op1", "op2"],
        "clock": 4,
    }
    # a client holding the old snapshot at clock 0 is behind it: it gets the snapshot too
    res = await sync(writer, 10, [], 0, snapshot=[])
    assert res["data"]["serializedDoc"] == ["op0", "op1", "op2"]
    await writer.close()
    await joiner.close()


async def test_failing_squash_keeps_the_log_logs_once_and_backs_off(caplog):
    server = make_server(threshold=2)
    writer = RawClient(DocSyncConsumer.as_asgi(server=server))
    await writer.connect("alice")
    clock = 0
    with caplog.at_level(logging.WARNING, logger="docsync.server"):
        for i, op in enumerate(["boom", "a", "b", "c", "d", "e"]):
            clock = (await sync(writer, i, [op], clock))["data"]["clock"]
            await settle(server)
    record, batches = stored(server)
    assert record.serialized_doc is None
    assert [op for b in batches for op in b.operations] == ["boom", "a", "b", "c", "d", "e"]
    failures = [r for r in caplog.records if "squashing" in r.getMessage()]
    assert len(failures) == 1
    assert "boom" in failures[0].getMessage()
    await writer.close()
