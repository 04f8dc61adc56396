"""Consumer tests with WebsocketCommunicator: the exact frames of PROTOCOL.md.

Expected frames are copied from ``transcript-official.md`` (section numbers in
the test names); where PROTOCOL §8 says docsync does better, the test says so.
"""

import json

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.wsclient import RawClient, ack, auth, dumps, event

DOC = "01k00000000000000000000001"
DOC2 = "01k00000000000000000000002"
SNAP = [DOC, "doc", {}]
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def op(node: str, text: str) -> list:
    """One DocNode insert of node ``node`` with string state ``text``."""
    return [[[0, [[node, "p"]], 0, 0, 0]], {node: {"text": json.dumps(text)}}]


A1, B1, A2, B2, A3 = (
    op("alice.1", "hello"),
    op("bob.1", "hi from bob"),
    op("alice.2", "again"),
    op("bob.2", "bob again"),
    op("alice.3", "third"),
)


def sync(ack_id, ops=(), snapshot=None, clock=0, doc=DOC):
    payload = {
        "type": "doc",
        "docId": doc,
        "operations": list(ops),
        "serializedDoc": snapshot,
        "clock": clock,
    }
    return event("sync", payload, ack_id)


def data(ack_id, ops=(), snapshot=None, clock=0, doc=DOC):
    body = {"docId": doc, "operations": list(ops), "serializedDoc": snapshot, "clock": clock}
    return ack(ack_id, {"data": body})


def error(ack_id, kind, message):
    return ack(ack_id, {"error": {"type": kind, "message": message}})


def collab(has, doc=DOC):
    return event("collaboration", {"docId": doc, "hasCollaborators": has})


def presence(value, doc=DOC):
    return event("presence", {"docId": doc, "presence": value})


def dirty(doc=DOC):
    return event("dirty", {"docId": doc})


async def connected(app, user, device=None, client=None) -> RawClient:
    c = RawClient(app)
    sid, identity = await c.connect(user, device, client)
    assert sid.startswith('40{"sid":"') and identity == f'42["identity",{{"userId":"{user}"}}]'
    return c


async def close_all(*clients):
    for c in clients:
        await c.close()


# -- handshake (transcript §1-3d) ----------------------------------------------


async def test_open_connect_identity(app):
    c = RawClient(app)
    opened = await c.open()
    assert opened.startswith('0{"sid":"')
    assert opened.endswith(
        '","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    )
    await c.send(
        '40{"deviceId":"dev-alice","clientId":"cli-alice","claimedUserId":null,"token":"valid-alice"}'
    )
    assert (await c.recv()).startswith('40{"sid":"')
    assert await c.recv() == '42["identity",{"userId":"alice"}]'
    await c.close()


def _auth(**changes):
    body = {"deviceId": "dev-x", "clientId": "cli-x", "claimedUserId": None, "token": "valid-bob"}
    body.update(changes)
    return "40" + dumps({k: v for k, v in body.items() if v is not ...})


REFUSED = [
    ("bad token", _auth(token="invalid-eve"), "Authentication failed: invalid credentials"),
    ("no token", _auth(token=...), "Authentication failed: invalid credentials"),
    ("token a number", _auth(token=123), "Authentication failed: invalid token"),
    ("missing deviceId", _auth(deviceId=...), "Device ID required"),
    ("deviceId a number", _auth(deviceId=7), "Device ID required"),
    ("empty deviceId", _auth(deviceId=""), "Device ID required"),
    ("missing clientId", _auth(clientId=...), "Client ID required"),
    ("empty clientId", _auth(clientId=""), "Client ID required"),
    (
        "claimed mismatch",
        _auth(claimedUserId="mallory"),
        "Authentication failed: claimed user ID mismatch",
    ),
    ("claimed a number", _auth(claimedUserId=5), "Authentication failed: invalid claimed user ID"),
    ("bare 40", "40", "Device ID required"),
    # The reference closes the socket; PROTOCOL §3 answers instead.
    ("auth a string", '40"x"', "Authentication required"),
    ("auth an array", "40[1]", "Authentication required"),
    ("authenticate raises", _auth(token="explode"), "Authentication error: internal server error"),
]


@pytest.mark.parametrize("frame,message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
async def test_refused_connect_then_retry(app, frame, message):
    """§2-3b: exact CONNECT_ERROR; §3c: the socket stays open and CONNECT may be retried."""
    c = RawClient(app)
    await c.open()
    await c.send(frame)
    assert await c.recv() == "44" + dumps({"message": message})
    assert await c.nothing()
    await c.send(_auth())
    assert (await c.recv()).startswith('40{"sid":"')
    assert await c.recv() == '42["identity",{"userId":"bob"}]'
    await c.close()


async def test_claimed_user_id_matches(app):
    c = RawClient(app)
    await c.open()
    await c.send(_auth(claimedUserId="bob"))
    assert (await c.recv()).startswith('40{"sid":"')
    assert await c.recv() == '42["identity",{"userId":"bob"}]'
    await c.close()


async def test_other_namespace_refused(app):
    c = RawClient(app)
    await c.open()
    await c.send("40/other," + _auth()[2:])
    assert await c.recv() == '44/other,{"message":"Invalid namespace"}'
    await c.send(_auth())
    assert (await c.recv()).startswith('40{"sid":"')
    await c.close()


async def test_events_before_connect_are_dropped(app):
    c = RawClient(app)
    await c.open()
    await c.send(sync(0, snapshot=SNAP))
    assert await c.nothing()
    await c.close()


async def test_second_connect_closes(app):
    """§3d."""
    c = await connected(app, "twice")
    await c.send("40" + dumps(auth("other")))
    assert await c.expect_close()


async def test_client_ping_closes(app):
    """§17b: only the server pings in EIO 4."""
    c = await connected(app, "pinger")
    await c.send("2")
    assert await c.expect_close()


async def test_engineio_close_closes(app):
    c = await connected(app, "alice")
    await c.send("1")
    assert await c.expect_close()


async def test_unsupported_eio_refused(app):
    c = RawClient(app, "/socket.io/?EIO=3&transport=websocket")
    connected_, _ = await c.comm.connect()
    assert connected_
    out = await c.recv_output()
    assert out["type"] == "websocket.close" and out["code"] == 1002
    assert "EIO=3" in out["reason"] and "Engine.IO 4" in out["reason"]


# -- sync (transcript §4-8d) ----------------------------------------------------


async def test_sync_round_trips(app):
    alice = await connected(app, "alice")
    # §4 create the doc
    await alice.send(sync(0, snapshot=SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0)
    # §5 one operation
    await alice.send(sync(1, [A1], SNAP))
    assert await alice.recv() == data(1, clock=1)
    # §6 bob pulls without a local copy
    bob = await connected(app, "bob")
    await bob.send(sync(0))
    assert await alice.recv() == collab(True)
    assert await bob.recv() == collab(True)
    assert await bob.recv() == data(0, [A1], SNAP, 1)
    # §7 bob writes: alice gets dirty after bob's ack, resyncs with her clock
    await bob.send(sync(1, [B1], SNAP, 1))
    assert await bob.recv() == data(1, clock=2)
    assert await alice.recv() == dirty()
    await alice.send(sync(2, snapshot=SNAP, clock=1))
    assert await alice.recv() == data(2, [B1], clock=2)
    # §8 a second tab of alice (same device) joins
    tab2 = await connected(app, "alice", "dev-alice", "cli-alice-2")
    await tab2.send(sync(0))
    assert await alice.recv() == collab(True)
    assert await bob.recv() == collab(True)
    assert await tab2.recv() == collab(True)
    assert await tab2.recv() == data(0, [A1, B1], SNAP, 2)
    # §8b alice writes: bob (other device) is dirty, her own tab is not
    await alice.send(sync(3, [A2], SNAP, 2))
    assert await alice.recv() == data(3, clock=3)
    assert await bob.recv() == dirty()
    assert await tab2.nothing()
    # §8c bob writes: both of alice's tabs are dirty; bob's ack has alice.2
    await bob.send(sync(2, [B2], SNAP, 2))
    assert await bob.recv() == data(2, [A2], clock=4)
    assert await alice.recv() == dirty()
    assert await tab2.recv() == dirty()
    # §8d a pull notifies nobody
    await bob.send(sync(3, snapshot=SNAP, clock=4))
    assert await bob.recv() == data(3, clock=4)
    # §16c a clock ahead of the server's gets the server's latest clock
    await alice.send(sync(4, snapshot=SNAP, clock=7))
    assert await alice.recv() == data(4, clock=4)
    assert await alice.nothing() and await tab2.nothing()
    await close_all(alice, bob, tab2)


async def test_snapshot_clock_rules(app):
    """PROTOCOL §4 steps 2-3: who stores the snapshot, who gets it back."""
    alice = await connected(app, "alice")
    await alice.send(sync(0, [A1]))  # no snapshot: the server stores none
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    bob = await connected(app, "bob")
    await bob.send(sync(0, [B1], SNAP, 1))  # the first snapshot is stored at clock 1
    assert await bob.recv() == collab(True)
    assert await bob.recv() == data(0, clock=2)
    carol = await connected(app, "carol")
    # carol's snapshot is older than the server's: she gets the server's
    await carol.send(sync(0, snapshot=[DOC, "doc", {"old": 1}], clock=0))
    assert await carol.recv() == collab(True)
    assert await carol.recv() == data(0, [B1], SNAP, 2)
    # no snapshot in the request: the server's, plus everything after it
    await carol.send(sync(1))
    assert await carol.recv() == data(1, [B1], SNAP, 2)
    # same clock as the server's snapshot: no snapshot, operations after it
    await carol.send(sync(2, snapshot=SNAP, clock=1))
    assert await carol.recv() == data(2, [B1], clock=2)
    await close_all(alice, bob, carol)


async def test_operations_come_back_in_clock_order_without_own(app):
    alice = await connected(app, "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()
    for i, node in enumerate(["a", "b", "c"], start=1):
        await alice.send(sync(i, [op(node, node)], SNAP, i - 1))
        assert await alice.recv() == data(i, clock=i)
    await alice.send(sync(4, [op("d", "d")], SNAP, 1))
    assert await alice.recv() == data(4, [op("b", "b"), op("c", "c")], clock=4)
    await alice.close()


async def test_pipelined_syncs_answer_in_order(app):
    """§16c: a failing request does not overtake or block the next one."""
    alice = await connected(app, "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()
    bad = {"type": "doc", "docId": "01k000000000000000000000p3", "clock": 0, "serializedDoc": None}
    await alice.send(event("sync", bad, 11))
    await alice.send(sync(12, snapshot=SNAP, clock=0))
    assert await alice.recv() == error(
        11, "ValidationError", "operations is required (an array of operations, possibly empty)."
    )
    assert await alice.recv() == data(12)
    await alice.close()


# -- presence (transcript §9-12b) --------------------------------------------------


async def _three_on_doc(app):
    alice = await connected(app, "alice")
    await alice.send(sync(0, [A1], SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    bob = await connected(app, "bob")
    await bob.send(sync(0))
    assert await bob.recv() == collab(True)
    assert await bob.recv() == data(0, [A1], SNAP, 1)
    assert await alice.recv() == collab(True)
    return alice, bob


async def test_presence(app):
    alice, bob = await _three_on_doc(app)
    # §9 alice sets presence: others receive it before her ack
    await alice.send(event("presence", {"docId": DOC, "presence": {"cursor": 3}}, 4))
    assert await bob.recv() == presence({"cli-alice": {"cursor": 3}})
    assert await alice.recv() == "434[{}]"
    # §10 carol joins: presence first, then collaboration, then the ack
    carol = await connected(app, "carol")
    await carol.send(sync(0))
    assert await carol.recv() == presence({"cli-alice": {"cursor": 3}})
    assert await carol.recv() == collab(True)
    assert await carol.recv() == data(0, [A1], SNAP, 1)
    assert await alice.recv() == collab(True)
    assert await bob.recv() == collab(True)
    # §11 alice clears it
    await alice.send(event("presence", {"docId": DOC, "presence": None}, 5))
    assert await bob.recv() == presence({"cli-alice": None})
    assert await carol.recv() == presence({"cli-alice": None})
    assert await alice.recv() == "435[{}]"
    # §12b bob sets presence on doc 1
    await bob.send(event("presence", {"docId": DOC, "presence": {"cursor": 1}}, 5))
    assert await alice.recv() == presence({"cli-bob": {"cursor": 1}})
    assert await carol.recv() == presence({"cli-bob": {"cursor": 1}})
    assert await bob.recv() == "435[{}]"
    assert await bob.nothing()
    await close_all(alice, bob, carol)


async def test_presence_for_unsubscribed_doc_refused(app):
    """§12: the reference stores it forever; PROTOCOL §4 refuses it."""
    alice, bob = await _three_on_doc(app)
    await bob.send(event("presence", {"docId": DOC2, "presence": {"cursor": 9}}, 4))
    assert await bob.recv() == error(4, "AuthorizationError", "Access denied")
    dave = await connected(app, "dave")
    await dave.send(sync(0, snapshot=[DOC2, "doc", {}], doc=DOC2))
    assert await dave.recv() == collab(False, DOC2)  # no presence frame: nothing was stored
    assert await dave.recv() == data(0, doc=DOC2)
    await close_all(alice, bob, dave)


# -- unsubscribe, delete, disconnect (§13-15b) ---------------------------------------


async def test_unsubscribe(app):
    alice, bob = await _three_on_doc(app)
    carol = await connected(app, "carol")
    await carol.send(sync(0))
    assert [await carol.recv(), await carol.recv()] == [collab(True), data(0, [A1], SNAP, 1)]
    assert await alice.recv() == collab(True) and await bob.recv() == collab(True)
    # §13 bob never set presence; others still get null, then his ack, then collaboration
    assert await bob.call("unsubscribe-doc", {"docId": DOC}) == {"success": True}
    for other in (alice, carol):
        assert await other.recv() == presence({"cli-bob": None})
        assert await other.recv() == collab(True)
    # §13b alice writes: carol is dirty, bob is not
    await alice.send(sync(6, [A2], SNAP, 1))
    assert await alice.recv() == data(6, clock=2)
    assert await carol.recv() == dirty()
    assert await bob.nothing()
    # unsubscribing a document one is not subscribed to is harmless
    assert await bob.call("unsubscribe-doc", {"docId": DOC}) == {"success": True}
    assert await alice.nothing()
    await close_all(alice, bob, carol)


async def test_unsubscribe_last_collaborator(app):
    alice, bob = await _three_on_doc(app)
    await bob.send(event("unsubscribe-doc", {"docId": DOC}, 7))
    assert await alice.recv() == presence({"cli-bob": None})
    assert await bob.recv() == '437[{"success":true}]'
    assert await alice.recv() == collab(False)
    await close_all(alice, bob)


async def test_delete_really_deletes(app):
    alice, bob = await _three_on_doc(app)
    assert await alice.call("delete-doc", {"docId": DOC}) == {"success": True}
    gone = f"Document {DOC!r} has been deleted and cannot be synced again; discard the local copy."
    carol = await connected(app, "carol")
    await carol.send(sync(0))  # a fresh pull
    assert await carol.recv() == error(0, "ValidationError", gone)
    await bob.send(sync(3, [B1], SNAP, 1))  # a stale client with a snapshot
    assert await bob.recv() == error(3, "ValidationError", gone)
    await alice.send(sync(4, snapshot=SNAP))  # and once more: it stays gone
    assert await alice.recv() == error(4, "ValidationError", gone)
    assert await carol.nothing()
    await close_all(alice, bob, carol)


async def test_delete_unknown_doc_acknowledged(app):
    alice = await connected(app, "alice")
    assert await alice.call("delete-doc", {"docId": DOC2}) == {"success": True}
    await alice.close()


@pytest.mark.parametrize("how", ["41", "transport"])
async def test_disconnect_cleans_up(app, how):
    """§15 (``41``) and §15b (dropped transport): presence null, then collaboration."""
    alice, bob = await _three_on_doc(app)
    await bob.send(event("presence", {"docId": DOC, "presence": {"cursor": 1}}, 4))
    assert await alice.recv() == presence({"cli-bob": {"cursor": 1}})
    assert await bob.recv() == "434[{}]"
    if how == "41":
        await bob.send("41")
    else:
        await bob.close()
    assert await alice.recv() == presence({"cli-bob": None})
    assert await alice.recv() == collab(False)
    # alice keeps syncing; a later joiner sees no stale presence
    carol = await connected(app, "carol")
    await carol.send(sync(0))
    assert await carol.recv() == collab(True)
    if how == "41":
        await bob.close()
    await close_all(alice, carol)


# -- malformed input (PROTOCOL §8) -----------------------------------------------------


VALID = {"type": "doc", "docId": DOC, "operations": [], "serializedDoc": None, "clock": 0}
INVALID = [
    (
        "operations a string",
        {**VALID, "operations": "xy"},
        "operations must be an array, got a string.",
    ),
    (
        "operations missing",
        {k: v for k, v in VALID.items() if k != "operations"},
        "operations is required (an array of operations, possibly empty).",
    ),
    ("clock negative", {**VALID, "clock": -1}, "clock must be a non-negative integer, got -1."),
    ("clock a string", {**VALID, "clock": "3"}, "clock must be a non-negative integer, got '3'."),
    ("clock a float", {**VALID, "clock": 1.5}, "clock must be a non-negative integer, got 1.5."),
    (
        "docId missing",
        {k: v for k, v in VALID.items() if k != "docId"},
        "docId is required (a non-empty string).",
    ),
    ("docId a number", {**VALID, "docId": 5}, "docId must be a non-empty string, got a number."),
    ("docId empty", {**VALID, "docId": ""}, "docId must be a non-empty string, got a string."),
    ("type missing", {k: v for k, v in VALID.items() if k != "type"}, "type is required"),
    ("payload a string", "x", "The sync payload must be an object, got a string."),
    ("payload missing", None, "The sync payload must be an object, got null."),
]


@pytest.mark.parametrize("payload,message", [r[1:] for r in INVALID], ids=[r[0] for r in INVALID])
async def test_invalid_sync_answered_and_connection_keeps_working(app, payload, message):
    alice = await connected(app, "alice")
    frame = "423" + (dumps(["sync", payload]) if payload is not None else '["sync"]')
    await alice.send(frame)
    prefix, body = await alice.recv_json()
    assert prefix == "433"
    assert body[0]["error"]["type"] == "ValidationError"
    assert body[0]["error"]["message"].startswith(message)
    await alice.send(sync(4, snapshot=SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(4)
    await alice.close()


@pytest.mark.parametrize(
    "name,payload,message",
    [
        ("presence", {"docId": 3, "presence": 1}, "docId must be a non-empty string"),
        ("presence", {"docId": DOC}, "presence is required"),
        ("presence", [], "The presence payload must be an object, got an array."),
        ("delete-doc", {}, "docId is required"),
        ("unsubscribe-doc", "x", "The unsubscribe-doc payload must be an object, got a string."),
    ],
)
async def test_invalid_other_events(app, name, payload, message):
    alice = await connected(app, "alice")
    answer = await alice.call(name, payload)
    assert answer["error"]["type"] == "ValidationError"
    assert answer["error"]["message"].startswith(message)
    await alice.close()


async def test_unknown_event_answered(app):
    """§16d: the reference never answers; here the client is told."""
    alice = await connected(app, "alice")
    await alice.send('4213["foo",{}]')
    assert await alice.recv() == error(13, "ValidationError", "Unknown event: foo")
    await alice.send('42["foo",{}]')  # without an ack id: nothing to answer
    assert await alice.nothing()
    await alice.close()


@pytest.mark.parametrize(
    "frame",
    [
        '42["sync"',  # not JSON
        "42{}",  # not an event array
        "42[1]",  # no event name
        "42",  # no data
        "4",  # empty Socket.IO packet
        "47[]",  # unknown Socket.IO packet type
        "4x",
        "43[{}]",  # an ACK from the client: nothing is waiting for it
        "5",  # Engine.IO UPGRADE
        "6",  # Engine.IO NOOP
        "9",  # unknown Engine.IO type
        "",
    ],
)
async def test_garbage_dropped_connection_keeps_working(app, frame):
    alice = await connected(app, "alice")
    if frame:
        await alice.send(frame)
    else:
        await alice.send_bytes(b"\x00\x01")  # a binary frame nobody announced
    assert await alice.nothing()
    await alice.send(sync(1, snapshot=SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(1)
    await alice.close()


async def test_malformed_event_with_ack_id_answered(app):
    alice = await connected(app, "alice")
    await alice.send('425["sync",')
    prefix, body = await alice.recv_json()
    assert prefix == "435" and body[0]["error"]["type"] == "ValidationError"
    await alice.send("427{}")
    prefix, body = await alice.recv_json()
    assert prefix == "437" and body[0]["error"]["type"] == "ValidationError"
    await alice.close()


async def test_event_without_ack_id_is_processed(app):
    """§19 crashes the reference; here the sync runs and nobody is answered."""
    alice, bob = await _three_on_doc(app)
    await bob.send(event("sync", {**VALID, "operations": [B1], "serializedDoc": SNAP, "clock": 1}))
    assert await alice.recv() == dirty()
    assert await bob.nothing()
    await alice.send(sync(3, snapshot=SNAP, clock=1))
    assert await alice.recv() == data(3, [B1], clock=2)
    await close_all(alice, bob)


async def test_oversized_frame_closes_with_1009():
    server = DocSyncServer(
        authenticate=token_authenticate, authorize=lambda e: True, max_payload=2000
    )
    app = DocSyncConsumer.as_asgi(server=server)
    alice, bob = await _three_on_doc(app)
    opened = await RawClient(app).open()
    assert opened.endswith('"maxPayload":2000}')
    await bob.send(sync(3, [op("big", "x" * 3000)], SNAP, 1))
    assert await bob.expect_close() == 1009
    assert await alice.recv() == presence({"cli-bob": None})
    assert await alice.recv() == collab(False)
    await alice.send(sync(3, [A2], SNAP, 1))  # the other client keeps working
    assert await alice.recv() == data(3, clock=2)
    # multi-byte characters count as bytes
    carol = await connected(app, "carol")
    await carol.send(event("presence", {"docId": DOC, "presence": "é" * 1000}, 1))
    assert await carol.expect_close() == 1009
    await alice.close()


async def test_binary_attachments_round_trip(app):
    alice = await connected(app, "alice")
    placeholder = {"_placeholder": True, "num": 0}
    payload = {**VALID, "operations": [placeholder]}
    await alice.send("451-0" + dumps(["sync", payload]))
    await alice.send_bytes(b"\x00\x01\xffbin")
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    bob = await connected(app, "bob")
    await bob.send(sync(0))
    assert await bob.recv() == collab(True)
    assert await bob.recv() == "461-0" + dumps(
        [{"data": {"docId": DOC, "operations": [placeholder], "serializedDoc": None, "clock": 1}}]
    )
    assert await bob.recv() == b"\x00\x01\xffbin"
    await close_all(alice, bob)


@pytest.mark.parametrize("num", [5, -1, "0", True, None])
async def test_bad_binary_placeholder_answered(app, num):
    alice = await connected(app, "alice")
    payload = {**VALID, "operations": [{"_placeholder": True, "num": num}]}
    await alice.send("451-3" + dumps(["sync", payload]))
    await alice.send_bytes(b"\x01")
    prefix, body = await alice.recv_json()
    assert prefix == "433" and body[0]["error"]["type"] == "ValidationError"
    assert "placeholder" in body[0]["error"]["message"]
    await alice.send(sync(4, snapshot=SNAP))  # still connected
    assert await alice.recv() == collab(False)
    await alice.close()


async def test_binary_packet_nested_too_deep_is_answered_not_recursed(app):
    """Putting attachments in place recurses through the data: 500 levels
    (past the interpreter's recursion limit) are refused before that."""
    alice = await connected(app, "alice")
    deep = "[" * 500 + dumps({"_placeholder": True, "num": 0}) + "]" * 500
    await alice.send('451-7["sync",{"type":"doc","docId":"d","clock":0,"operations":' + deep + "}]")
    await alice.send_bytes(b"\x01")
    prefix, body = await alice.recv_json()
    assert prefix == "437" and body[0]["error"]["type"] == "ValidationError"
    assert "nested too deeply" in body[0]["error"]["message"], body
    await alice.send(sync(8, snapshot=SNAP))  # still connected
    assert await alice.recv() == collab(False)
    await alice.close()


async def test_a_malformed_packet_with_a_huge_ack_id_is_dropped(app, caplog):
    """int() refuses over 4,300 digits: no ack id of a client's is that long."""
    alice = await connected(app, "alice")
    await alice.send("42" + "9" * 5000 + '["sync",')
    await alice.send("42" + "9" * 16 + '["sync",')
    assert await alice.nothing()
    await alice.send(sync(1, snapshot=SNAP))  # still connected
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(1)
    assert "Traceback" not in caplog.text and "failed; closing" not in caplog.text
    await alice.close()


async def test_attachments_count_towards_max_payload():
    server = DocSyncServer(
        authenticate=token_authenticate, authorize=lambda e: True, max_payload=2000
    )
    alice = await connected(DocSyncConsumer.as_asgi(server=server), "alice")
    await alice.send("4599-0" + dumps(["sync", VALID]))
    for _ in range(2):
        await alice.send_bytes(b"\x00" * 999)
    await alice.send_bytes(b"\x00" * 999)
    assert await alice.expect_close() == 1009
