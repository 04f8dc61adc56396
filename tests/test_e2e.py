"""End to end: a real daphne process, real python-socketio clients."""

import asyncio

import pytest

from tests.liveserver import LiveServer
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e]
DOC = "01k00000000000000000000001"


@pytest.fixture(scope="module")
def live():
    server = LiveServer().start()
    yield server
    server.stop()


async def test_two_users_sync_dirty_collaboration(live):
    alice = await Client(live.url, "alice").connect()
    bob = await Client(live.url, "bob").connect()
    try:
        res = await alice.sync(DOC, snapshot=[DOC, "doc", {}])
        assert res == {"data": {"docId": DOC, "operations": [], "serializedDoc": None, "clock": 0}}
        assert await alice.wait_for("collaboration") == {"docId": DOC, "hasCollaborators": False}
        res = await alice.sync(DOC, operations=[["op-a"]], snapshot=[DOC, "doc", {}])
        assert res["data"]["clock"] == 1
        res = await bob.sync(DOC)
        assert res == {"data": {"docId": DOC, "operations": [["op-a"]], "serializedDoc": [DOC, "doc", {}], "clock": 1}}
        assert await alice.wait_for("collaboration") == {"docId": DOC, "hasCollaborators": True}
        assert await bob.wait_for("collaboration") == {"docId": DOC, "hasCollaborators": True}
        await bob.sync(DOC, operations=[["op-b"]], snapshot=[DOC, "doc", {}], clock=1)
        assert await alice.wait_for("dirty") == {"docId": DOC}
        res = await alice.sync(DOC, snapshot=[DOC, "doc", {}], clock=1)
        assert res["data"] == {"docId": DOC, "operations": [["op-b"]], "serializedDoc": None, "clock": 2}
        await alice.call("presence", {"docId": DOC, "presence": {"cursor": 3}})
        assert await bob.wait_for("presence") == {"docId": DOC, "presence": {"cli-alice": {"cursor": 3}}}
    finally:
        await alice.close()
        await bob.close()
    await asyncio.sleep(0)
