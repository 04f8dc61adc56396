"""End to end: a real daphne process, real python-socketio clients, raw WebSockets."""

import asyncio
import json
import time

import aiohttp
import pytest

from tests.liveserver import LiveServer
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e]


def doc_id(n: int) -> str:
    """A distinct DocNode-style id per test (the servers are shared by the module)."""
    return f"01k{n:023d}"


def snap(doc: str) -> list:
    return [doc, "doc", {}]


@pytest.fixture(scope="module")
def live():
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fast():
    """Short heartbeat and connect timeout."""
    env = {"E2E_PING_INTERVAL": "300", "E2E_PING_TIMEOUT": "300", "E2E_CONNECT_TIMEOUT": "800"}
    server = LiveServer(env).start()
    yield server
    server.stop()


class Clients:
    """Connected python-socketio clients, all closed at the end of the test."""

    def __init__(self, url: str):
        self.url = url
        self.all: list[Client] = []

    async def __call__(self, user: str, **kwargs) -> Client:
        client = await Client(self.url, user, **kwargs).connect()
        self.all.append(client)
        return client

    async def close(self) -> None:
        for client in self.all:
            if client.sio.connected:
                await client.close()


@pytest.fixture
async def clients(live):
    made = Clients(live.url)
    yield made
    await made.close()


def ok(doc, operations=(), snapshot=None, clock=0):
    return {
        "data": {
            "docId": doc,
            "operations": list(operations),
            "serializedDoc": snapshot,
            "clock": clock,
        }
    }


async def test_one_client(clients):
    doc = doc_id(1)
    alice = await clients("alice")
    assert alice.identity == {"userId": "alice"}
    assert await alice.sync(doc, snapshot=snap(doc)) == ok(doc)
    assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
    assert await alice.sync(doc, [["a1"]], snap(doc)) == ok(doc, clock=1)
    assert await alice.sync(doc, [["a2"]], snap(doc), 1) == ok(doc, clock=2)
    # a fresh copy (no snapshot): the stored snapshot and every batch
    assert await alice.sync(doc) == ok(doc, [["a1"], ["a2"]], snap(doc), 2)
    # a pull with a snapshot at clock 1: no snapshot, the newer batch only
    assert await alice.sync(doc, snapshot=snap(doc), clock=1) == ok(doc, [["a2"]], None, 2)
    assert "dirty" not in alice.names()


async def test_two_users_sync_dirty_collaboration(clients):
    doc = doc_id(2)
    alice = await clients("alice")
    bob = await clients("bob")
    assert await alice.sync(doc, snapshot=snap(doc)) == ok(doc)
    assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
    assert await alice.sync(doc, [["op-a"]], snap(doc)) == ok(doc, clock=1)
    assert await bob.sync(doc) == ok(doc, [["op-a"]], snap(doc), 1)
    assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": True}
    assert await bob.wait_for("collaboration") == {"docId": doc, "hasCollaborators": True}
    await bob.sync(doc, [["op-b"]], snap(doc), 1)
    assert await alice.wait_for("dirty") == {"docId": doc}
    assert await alice.sync(doc, snapshot=snap(doc), clock=1) == ok(doc, [["op-b"]], None, 2)
    assert await alice.call("presence", {"docId": doc, "presence": {"cursor": 3}}) == {}
    assert await bob.wait_for("presence") == {
        "docId": doc,
        "presence": {"cli-alice": {"cursor": 3}},
    }
    assert "dirty" not in bob.names()


async def test_three_clients(clients):
    doc = doc_id(3)
    alice = await clients("alice")
    tab2 = await clients("alice", client="cli-alice-2")  # same device
    bob = await clients("bob")
    await alice.sync(doc, [["a1"]], snap(doc))
    await alice.call("presence", {"docId": doc, "presence": {"cursor": 1}})
    # joining: the presence map, then collaboration, then the ack
    assert await tab2.sync(doc) == ok(doc, [["a1"]], snap(doc), 1)
    assert tab2.names()[:2] == ["presence", "collaboration"]
    assert await tab2.wait_for("presence") == {
        "docId": doc,
        "presence": {"cli-alice": {"cursor": 1}},
    }
    assert await tab2.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
    assert await bob.sync(doc) == ok(doc, [["a1"]], snap(doc), 1)
    for c in (alice, tab2, bob):
        await c.wait_for("collaboration", lambda d: d["hasCollaborators"])
    # alice writes: bob (other device) is dirty, her other tab is not
    assert await alice.sync(doc, [["a2"]], snap(doc), 1) == ok(doc, clock=2)
    assert await bob.wait_for("dirty") == {"docId": doc}
    # bob writes: both tabs of alice are dirty
    assert await bob.sync(doc, [["b1"]], snap(doc), 1) == ok(doc, [["a2"]], None, 3)
    assert await alice.wait_for("dirty") == {"docId": doc}
    assert await tab2.wait_for("dirty") == {"docId": doc}
    assert "dirty" not in tab2.names()  # exactly one: alice's own write made none
    # bob's presence, then bob unsubscribes: null, then collaboration
    await bob.call("presence", {"docId": doc, "presence": "here"})
    for c in (alice, tab2):
        assert await c.wait_for("presence") == {"docId": doc, "presence": {"cli-bob": "here"}}
    assert await bob.call("unsubscribe-doc", {"docId": doc}) == {"success": True}
    for c in (alice, tab2):
        assert await c.wait_for("presence") == {"docId": doc, "presence": {"cli-bob": None}}
        assert await c.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
    await alice.sync(doc, [["a3"]], snap(doc), 3)
    await bob.sync(doc_id(30))  # a round trip: a dirty for doc would have come first
    assert "dirty" not in bob.names()
    # tab2 goes away: alice sees its presence cleared (it had none) and collaboration
    await tab2.close()
    assert await alice.wait_for("presence") == {"docId": doc, "presence": {"cli-alice-2": None}}
    assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}


async def test_delete(clients):
    doc = doc_id(4)
    alice = await clients("alice")
    bob = await clients("bob")
    await alice.sync(doc, [["a1"]], snap(doc))
    await bob.sync(doc)
    assert await alice.call("delete-doc", {"docId": doc}) == {"success": True}
    for attempt in (bob.sync(doc, [["b1"]], snap(doc), 1), alice.sync(doc), bob.sync(doc)):
        answer = await attempt
        assert answer["error"]["type"] == "ValidationError"
        assert "has been deleted" in answer["error"]["message"]


async def test_disconnect_cleanup(clients):
    doc = doc_id(5)
    alice = await clients("alice")
    bob = await clients("bob")
    await alice.sync(doc, snapshot=snap(doc))
    await bob.sync(doc)
    await alice.wait_for("collaboration", lambda d: d["hasCollaborators"])
    await bob.call("presence", {"docId": doc, "presence": {"cursor": 2}})
    await alice.wait_for("presence")
    await bob.close()  # socket.io DISCONNECT, then the transport closes
    assert await alice.wait_for("presence") == {"docId": doc, "presence": {"cli-bob": None}}
    assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
    carol = await clients("carol")
    await carol.sync(doc)
    assert "presence" not in carol.names()  # bob's presence is gone


async def test_binary_operations(clients):
    doc = doc_id(6)
    alice = await clients("alice")
    bob = await clients("bob")
    assert await alice.sync(doc, [{"update": b"\x00\x01\xff"}]) == ok(doc, clock=1)
    assert await bob.sync(doc) == ok(doc, [{"update": b"\x00\x01\xff"}], None, 1)


async def test_unknown_event_and_validation(clients):
    alice = await clients("alice")
    assert await alice.call("foo", {}) == {
        "error": {"type": "ValidationError", "message": "Unknown event: foo"}
    }
    answer = await alice.call("sync", {"type": "doc", "docId": doc_id(7), "operations": "xy"})
    assert answer == {
        "error": {
            "type": "ValidationError",
            "message": "operations must be an array, got a string.",
        }
    }
    await alice.sio.emit("sync", {"type": "doc", "docId": doc_id(7), "operations": []})  # no ack
    assert await alice.sync(doc_id(7)) == ok(doc_id(7))


REFUSALS = [
    (
        {"deviceId": "d", "clientId": "c", "token": "invalid-eve"},
        "Authentication failed: invalid credentials",
    ),
    ({"deviceId": "d", "clientId": "c"}, "Authentication failed: invalid credentials"),
    ({"deviceId": "d", "clientId": "c", "token": 123}, "Authentication failed: invalid token"),
    ({"clientId": "c", "token": "valid-bob"}, "Device ID required"),
    ({"deviceId": 7, "clientId": "c", "token": "valid-bob"}, "Device ID required"),
    ({"deviceId": "d", "token": "valid-bob"}, "Client ID required"),
    ({"deviceId": "d", "clientId": "", "token": "valid-bob"}, "Client ID required"),
    (
        {"deviceId": "d", "clientId": "c", "claimedUserId": "mallory", "token": "valid-bob"},
        "Authentication failed: claimed user ID mismatch",
    ),
    (
        {"deviceId": "d", "clientId": "c", "claimedUserId": 5, "token": "valid-bob"},
        "Authentication failed: invalid claimed user ID",
    ),
    (
        {"deviceId": "d", "clientId": "c", "token": "explode"},
        "Authentication error: internal server error",
    ),
    ({}, "Device ID required"),
    ("x", "Authentication required"),
]


async def test_handshake_errors_seen_by_python_socketio(live):
    """Each refusal reaches ``connect_error`` with the exact message."""

    async def refused(auth, message):
        client = Client(live.url, auth=auth)
        assert await client.refused() == {"message": message}
        assert "failed to connect" in str(client.error)

    await asyncio.gather(*(refused(auth, message) for auth, message in REFUSALS))
    other = Client(live.url, "bob")
    assert await other.refused("/other") == {"message": "Invalid namespace"}


async def test_claimed_user_id_accepted(clients):
    client = Client(clients.url, "bob")
    client.auth["claimedUserId"] = "bob"
    await client.connect()
    clients.all.append(client)
    assert client.identity == {"userId": "bob"}


# -- raw WebSockets and HTTP -------------------------------------------------------


async def test_polling_refused(live):
    async with aiohttp.ClientSession() as http:
        for eio in ("4", "3"):
            url = f"{live.url}/socket.io/?EIO={eio}&transport=polling"
            async with http.get(url) as res:
                assert res.status == 400
                assert await res.json() == {"code": 0, "message": "Transport unknown"}


async def test_eio3_websocket_refused(live):
    url = f"ws://127.0.0.1:{live.port}/socket.io/?EIO=3&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        # 1002 where the server allows it; daphne sends only 1000 and 3000-4999,
        # and drops the close reason.
        assert msg.data == 4002


async def _open(http, server):
    ws = await http.ws_connect(server.ws_url)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith('0{"sid":')
    return ws, json.loads(opened[1:])


async def test_heartbeat_closes_silent_client(fast):
    async with aiohttp.ClientSession() as http:
        ws, info = await _open(http, fast)
        assert (info["pingInterval"], info["pingTimeout"]) == (300, 300)
        assert await ws.receive_str(timeout=5) == "2"  # never answered
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE


async def test_heartbeat_keeps_answering_client(fast):
    async with aiohttp.ClientSession() as http:
        ws, _ = await _open(http, fast)
        await ws.send_str('40{"deviceId":"d","clientId":"c","token":"valid-pong"}')
        assert (await ws.receive_str(timeout=5)).startswith('40{"sid":')
        assert await ws.receive_str(timeout=5) == '42["identity",{"userId":"pong"}]'
        for _ in range(4):  # four intervals: longer than interval + timeout
            assert await ws.receive_str(timeout=5) == "2"
            await ws.send_str("3")
        await ws.send_str('420["foo",{}]')
        assert await ws.receive_str(timeout=5) == (
            '430[{"error":{"type":"ValidationError","message":"Unknown event: foo"}}]'
        )
        await ws.close()


async def test_connect_timeout_closes_socket_that_never_connects(fast):
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        ws, _ = await _open(http, fast)
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            assert msg.data == "2"
            await ws.send_str("3")  # alive, just never CONNECTs
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert time.monotonic() - started >= 0.7


async def test_python_socketio_survives_short_heartbeat(fast):
    alice = await Client(fast.url, "alice").connect()
    try:
        await alice.sio.sleep(1)  # several ping rounds: the client answers them
        assert await alice.sync(doc_id(8)) == ok(doc_id(8))
    finally:
        await alice.close()


async def test_garbage_from_one_client_does_not_hurt_others(live, clients):
    doc = doc_id(9)
    alice = await clients("alice")
    bob = await clients("bob")
    await alice.sync(doc, snapshot=snap(doc))
    await bob.sync(doc)
    garbage = [
        "42[",
        "42{}",
        "42[1]",
        "47",
        "4",
        "9",
        "",
        "43[{}]",
        '451-0["sync",{"_placeholder":true,"num":5}]',
        '421["sync",null]',
        "40" + "{" * 5000,
        "40/other,{}",
        "3",
    ]
    async with aiohttp.ClientSession() as http:
        ws, _ = await _open(http, live)
        await ws.send_str('40{"deviceId":"g","clientId":"g","token":"valid-mallory"}')
        await ws.receive_str(timeout=5), await ws.receive_str(timeout=5)

        async def write(clock):
            return await alice.sync(doc, [[f"a{clock}"]], snap(doc), clock)

        for i, frame in enumerate(garbage):
            await ws.send_str(frame)
            await ws.send_bytes(b"\xff" * i)
            assert (await write(i))["data"]["clock"] == i + 1
            await bob.wait_for("dirty")
        await ws.send_str('425["sync",{"type":"doc","docId":"x","operations":[]}]')
        while True:
            frame = await ws.receive_str(timeout=5)
            if frame.startswith("435"):
                break
        assert json.loads(frame[3:])[0]["data"]["clock"] == 0
        await ws.send_str("x" * 1_000_001)  # over maxPayload
        msg = await ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4009  # 1009 under daphne
    got = await bob.sync(doc)
    assert got["data"]["clock"] == len(garbage)
    assert len(got["data"]["operations"]) == len(garbage)
