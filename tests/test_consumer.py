"""Consumer tests with WebsocketCommunicator: exact frames of PROTOCOL.md."""

import json

import pytest

from tests.wsclient import RawClient

DOC = "01k00000000000000000000001"
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def sync(ack, ops=(), snapshot=None, clock=0, doc=DOC):
    payload = {"type": "doc", "docId": doc, "operations": list(ops), "serializedDoc": snapshot, "clock": clock}
    return f"42{ack}" + json.dumps(["sync", payload], separators=(",", ":"))


async def test_open_connect_identity(app):
    c = RawClient(app)
    opened = await c.open()
    assert opened.startswith('0{"sid":"')
    assert opened.endswith('","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
    await c.send('40{"deviceId":"dev-alice","clientId":"cli-alice","claimedUserId":null,"token":"valid-alice"}')
    assert (await c.recv()).startswith('40{"sid":"')
    assert await c.recv() == '42["identity",{"userId":"alice"}]'
    await c.close()


async def test_first_sync_and_write(app):
    c = RawClient(app)
    await c.connect("alice")
    await c.send(sync(0, snapshot=[DOC, "doc", {}]))
    assert await c.recv() == f'42["collaboration",{{"docId":"{DOC}","hasCollaborators":false}}]'
    assert await c.recv() == f'430[{{"data":{{"docId":"{DOC}","operations":[],"serializedDoc":null,"clock":0}}}}]'
    await c.send(sync(1, ops=[{"op": 1}], snapshot=[DOC, "doc", {}]))
    assert await c.recv() == f'431[{{"data":{{"docId":"{DOC}","operations":[],"serializedDoc":null,"clock":1}}}}]'
    await c.close()
