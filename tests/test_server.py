"""DocSyncServer's listeners (PROTOCOL §6), policy hops and ``close()``."""

import asyncio
import logging

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.test_consumer import A1, DOC, SNAP, collab, connected, data, error, sync
from tests.wsclient import RawClient, dumps

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

NAMES = ("client_connect", "client_disconnect", "doc_subscribe", "doc_unsubscribe", "sync_request")


class Recorder:
    """Async listeners on ``server`` that queue every event, so tests can wait."""

    def __init__(self, server: DocSyncServer, names=NAMES):
        self.queues = {name: asyncio.Queue() for name in names}
        self.removers = {
            name: getattr(server, f"on_{name}")(self._listener(name)) for name in names
        }

    def _listener(self, name):
        async def listener(event):
            await self.queues[name].put(event)

        return listener

    async def next(self, name: str, timeout: float = 2):
        return await asyncio.wait_for(self.queues[name].get(), timeout)

    def empty(self, name: str) -> bool:
        return self.queues[name].empty()


async def test_listeners_receive_protocol_fields(server, app):
    rec = Recorder(server)
    alice = await connected(app, "alice")
    ev = await rec.next("client_connect")
    assert ev == {
        "userId": "alice",
        "deviceId": "dev-alice",
        "clientId": "cli-alice",
        "context": {"token": "valid-alice"},
    }
    assert (ev.user_id, ev.device_id, ev.client_id) == ("alice", "dev-alice", "cli-alice")
    await alice.send(sync(0, [A1], SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    ev = await rec.next("doc_subscribe")
    assert ev == {"userId": "alice", "deviceId": "dev-alice", "clientId": "cli-alice", "docId": DOC}
    assert ev.doc_id == DOC
    ev = await rec.next("sync_request")
    assert ev["status"] == "success"
    assert ev["req"] == {
        "type": "doc",
        "docId": DOC,
        "operations": [A1],
        "serializedDoc": SNAP,
        "clock": 0,
    }
    assert ev["res"] == {"operations": [], "serializedDoc": None, "clock": 1}
    assert (ev.clients_count, ev.devices_count) == (1, 1)
    assert isinstance(ev.duration_ms, float) and ev.duration_ms >= 0
    assert "error" not in ev
    assert await alice.call("unsubscribe-doc", {"docId": DOC}) == {"success": True}
    ev = await rec.next("doc_unsubscribe")
    assert ev.reason == "unsubscribe-doc" and ev.doc_id == DOC and ev.user_id == "alice"
    await alice.send(sync(1))
    await alice.recv(), await alice.recv()
    await rec.next("doc_subscribe")
    await alice.send("41")
    ev = await rec.next("doc_unsubscribe")
    assert ev.reason == "client namespace disconnect"
    ev = await rec.next("client_disconnect")
    assert ev == {
        "userId": "alice",
        "deviceId": "dev-alice",
        "clientId": "cli-alice",
        "reason": "client namespace disconnect",
    }
    await alice.close()


async def test_counts_and_transport_close(server, app):
    rec = Recorder(server)
    alice = await connected(app, "alice")
    tab2 = await connected(app, "alice", "dev-alice", "cli-alice-2")
    bob = await connected(app, "bob")
    for c in (alice, tab2, bob):
        await c.send(sync(0))
        while not (await c.recv()).startswith("430"):
            pass
        ev = await rec.next("sync_request")
    assert (ev.clients_count, ev.devices_count) == (3, 2)
    await bob.close()
    assert (await rec.next("doc_unsubscribe")).reason == "transport close"
    ev = await rec.next("client_disconnect")
    assert (ev.user_id, ev.reason) == ("bob", "transport close")
    await alice.close()
    await tab2.close()


async def test_remover_sync_and_async_listeners(server, app):
    seen = []
    remove = server.on_client_connect(seen.append)  # a plain listener
    rec = Recorder(server, ["client_connect"])  # registered after: runs after it
    alice = await connected(app, "alice")
    await rec.next("client_connect")
    assert [e.user_id for e in seen] == ["alice"]
    remove()
    remove()  # removing twice is harmless
    bob = await connected(app, "bob")
    assert (await rec.next("client_connect")).user_id == "bob"
    assert [e.user_id for e in seen] == ["alice"]
    await alice.close()
    await bob.close()


async def test_raising_listener_is_logged_and_harmless(server, app, caplog):
    def broken(event):
        raise RuntimeError("listener bug")

    async def broken_async(event):
        raise RuntimeError("async listener bug")

    for name in NAMES:
        getattr(server, f"on_{name}")(broken)
        getattr(server, f"on_{name}")(broken_async)
    rec = Recorder(server)
    caplog.set_level(logging.ERROR, logger="docsync")
    alice = await connected(app, "alice")
    await alice.send(sync(0, [A1], SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    assert (await rec.next("sync_request")).status == "success"
    assert "listener bug" in caplog.text and "async listener bug" in caplog.text
    await alice.close()
    assert (await rec.next("client_disconnect")).reason == "transport close"


async def test_sync_request_fires_once_per_sync_with_errors():
    def authorize(event):
        return event["req"].get("docId") != "01k0000000000000000000000x"

    server = DocSyncServer(authenticate=token_authenticate, authorize=authorize)
    app = DocSyncConsumer.as_asgi(server=server)
    rec = Recorder(server, ["sync_request"])
    alice = await connected(app, "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()
    assert (await rec.next("sync_request")).status == "success"
    # refused by authorize
    await alice.send(sync(1, doc="01k0000000000000000000000x"))
    assert await alice.recv() == error(1, "AuthorizationError", "Access denied")
    ev = await rec.next("sync_request")
    assert ev.status == "error" and "res" not in ev
    assert ev.error == {"type": "AuthorizationError", "message": "Access denied", "stack": None}
    assert ev.doc_id == "01k0000000000000000000000x"
    # refused by validation
    await alice.send('422["sync",{"type":"doc","docId":"' + DOC + '","operations":"xy"}]')
    prefix, body = await alice.recv_json()
    assert prefix == "432"
    ev = await rec.next("sync_request")
    assert ev.status == "error"
    assert ev.error["type"] == "ValidationError"
    assert ev.error["message"] == body[0]["error"]["message"]
    assert ev.req["docId"] == DOC and ev.req["operations"] == "xy"
    # a deleted document
    assert await alice.call("delete-doc", {"docId": DOC}) == {"success": True}
    await alice.send(sync(9, snapshot=SNAP))
    assert (await alice.recv()).startswith('439[{"error":{"type":"ValidationError"')
    assert (await rec.next("sync_request")).status == "error"
    assert rec.empty("sync_request")
    await alice.close()


@pytest.mark.parametrize(
    "frame,device,client,reason",
    [
        (
            '40{"deviceId":"dev-x","clientId":"cli-x","token":"bad"}',
            "dev-x",
            "cli-x",
            "Authentication failed: invalid credentials",
        ),
        ("40", "unknown", "unknown", "Device ID required"),
        ('40{"deviceId":"dev-x","token":"explode"}', "dev-x", "unknown", "Client ID required"),
        (
            '40{"deviceId":"dev-x","clientId":"cli-x","token":"explode"}',
            "dev-x",
            "cli-x",
            "Authentication error: internal server error",
        ),
    ],
)
async def test_refused_connection_fires_client_disconnect(
    server, app, frame, device, client, reason
):
    rec = Recorder(server)
    c = RawClient(app)
    await c.open()
    await c.send(frame)
    assert await c.recv() == "44" + dumps({"message": reason})
    ev = await rec.next("client_disconnect")
    assert ev == {"userId": "unknown", "deviceId": device, "clientId": client, "reason": reason}
    assert rec.empty("client_connect")
    await c.close()
    assert rec.empty("client_disconnect")


async def test_close_disconnects_everyone(server, app):
    rec = Recorder(server)
    alice = await connected(app, "alice")
    bob = await connected(app, "bob")
    await alice.send(sync(0))
    await alice.recv(), await alice.recv()
    pending = RawClient(app)  # opened, never CONNECTed
    await pending.open()
    await server.close()
    for c in (alice, bob, pending):
        assert await c.expect_close() == 1000
    reasons = {(await rec.next("client_disconnect")).user_id for _ in range(2)}
    assert reasons == {"alice", "bob"}
    ev = await rec.next("doc_unsubscribe")
    assert (ev.user_id, ev.reason) == ("alice", "server shutting down")
    assert server.connections == 0
    for c in (alice, bob, pending):
        await c.close()
    assert rec.empty("client_disconnect")


async def test_close_reason_seen_by_listener(server, app):
    rec = Recorder(server, ["client_disconnect"])
    alice = await connected(app, "alice")
    await server.close()
    assert (await rec.next("client_disconnect")).reason == "server shutting down"
    assert await alice.expect_close() == 1000
    await alice.close()


async def test_ping_timeout_closes_and_reports():
    server = DocSyncServer(
        authenticate=token_authenticate, authorize=lambda e: True, ping_interval=50, ping_timeout=50
    )
    rec = Recorder(server, ["client_disconnect"])
    app = DocSyncConsumer.as_asgi(server=server)
    alice = await connected(app, "alice")
    assert await alice.recv() == "2"  # never answered
    assert await alice.expect_close() == 1000
    assert (await rec.next("client_disconnect")).reason == "ping timeout"
    bob = await connected(app, "bob")
    for _ in range(3):  # answering keeps it open past interval + timeout
        assert await bob.recv() == "2"
        await bob.send("3")
    assert (await bob.call("foo", {}))["error"]["message"] == "Unknown event: foo"
    await bob.close()
    await alice.close()


async def test_connect_timeout_closes_socket_that_never_connects():
    server = DocSyncServer(
        authenticate=token_authenticate, authorize=lambda e: True, connect_timeout=100
    )
    app = DocSyncConsumer.as_asgi(server=server)
    pending = RawClient(app)
    await pending.open()
    assert await pending.expect_close() == 1000
    alice = await connected(app, "alice")  # a connected one outlives the timeout
    assert await alice.call("foo", {}, timeout=0.5)
    await alice.close()
    await pending.close()


async def test_refusals_and_async_policy():
    async def authenticate(request):
        return await asyncio.sleep(0, token_authenticate(request))

    async def authorize(event):
        return event["type"] == "sync" or event["req"]["docId"] != DOC

    server = DocSyncServer(authenticate=authenticate, authorize=authorize)
    alice = await connected(DocSyncConsumer.as_asgi(server=server), "alice")
    await alice.send(sync(0))
    await alice.recv(), await alice.recv()
    denied = {"type": "AuthorizationError", "message": "Access denied"}
    presence = {"docId": DOC, "presence": 1}
    assert await alice.call("presence", presence) == {"error": denied}
    assert await alice.call("delete-doc", {"docId": DOC}) == {"success": False, "error": denied}
    assert await alice.call("unsubscribe-doc", {"docId": DOC}) == {
        "success": False,
        "error": denied,
    }
    await alice.close()


async def test_concurrent_writers_get_distinct_clocks(server, app):
    """Requests for one document never interleave: every batch gets its own clock."""
    writers = [await connected(app, f"w{i}") for i in range(5)]
    for i, w in enumerate(writers):
        for n in range(5):
            await w.send(sync(n, [[f"w{i}.{n}"]]))
    clocks = []
    for w in writers:
        for n in range(5):
            while True:
                prefix, body = await w.recv_json()
                if prefix == f"43{n}":
                    clocks.append(body[0]["data"]["clock"])
                    break
    assert sorted(clocks) == list(range(1, 26))
    reader = await connected(app, "reader")
    await reader.send(sync(0))
    while True:
        prefix, body = await reader.recv_json()
        if prefix == "430":
            break
    ops = body[0]["data"]["operations"]
    assert len(ops) == 25 and body[0]["data"]["clock"] == 25
    for i in range(5):  # each writer's batches in its own order
        mine = [op[0] for op in ops if op[0].startswith(f"w{i}.")]
        assert mine == [f"w{i}.{n}" for n in range(5)]
    for c in (*writers, reader):
        await c.close()


async def test_server_as_asgi_still_routes_with_a_deprecation_warning():
    server = DocSyncServer()
    with pytest.warns(DeprecationWarning, match="DocSyncConsumer.as_asgi"):
        app = server.as_asgi()
    assert app.consumer_class is DocSyncConsumer
    assert app.consumer_initkwargs == {"server": server}


async def test_pongs_are_taken_while_a_request_waits():
    """A request that takes longer than the ping timeout (an authorize waiting
    here) keeps its connection: the pongs are read ahead of the request queue."""
    release = asyncio.Event()

    async def authorize(event):
        await release.wait()
        return True

    server = DocSyncServer(
        authenticate=token_authenticate, authorize=authorize, ping_interval=50, ping_timeout=100
    )
    app = DocSyncConsumer.as_asgi(server=server)
    alice = await connected(app, "alice")
    await alice.send(sync(1))
    for _ in range(6):  # 300 ms at least: three times interval + timeout
        assert await alice.recv() == "2"
        await alice.send("3")
    release.set()
    frame = await alice.recv()
    while not frame.startswith("431"):  # pings and the subscription's events first
        if frame == "2":
            await alice.send("3")
        frame = await alice.recv()
    assert frame.startswith('431[{"data":')
    await alice.close()
