"""One clean-up path for every end of a connection (issue 9, points 3 and 4).

Consumer-level tests (``WebsocketCommunicator``): a send that finds the
client gone, a handler that raises, a ping timeout, a client that stops
reading, ``server.close()``. Each must run the clean-up exactly once (one
``client_disconnect``), tell the others (presence ``null``,
``collaboration``), empty the state backend, and still send what committed
work owes the others (``dirty``, the ``sync_request`` event). The
end-to-end versions on uvicorn and daphne are in ``test_lifecycle_e2e.py``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.test_consumer import DOC, SNAP, collab, connected, dirty, presence, sync
from tests.test_server import Recorder
from tests.wsclient import RawClient, dumps

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def make_server(**options) -> DocSyncServer:
    return DocSyncServer(
        provider=InMemoryProvider(),
        authenticate=token_authenticate,
        authorize=lambda event: True,
        **options,
    )


def vanishing(app, gone: asyncio.Event):
    """``app`` whose ASGI ``send`` raises once ``gone`` is set, as uvicorn's
    does (``ClientDisconnected``, an ``OSError``) after the client vanished."""

    async def wrapped(scope, receive, send):
        async def send_or_fail(message):
            if gone.is_set():
                raise OSError("client disconnected")
            await send(message)

        await app(scope, receive, send_or_fail)

    return wrapped


async def observed(app) -> RawClient:
    """bob, subscribed to DOC; returns him once alice's arrival is seen."""
    bob = await connected(app, "bob")
    await bob.send(sync(0, snapshot=SNAP))
    assert await bob.recv() == collab(False)
    assert (await bob.recv_json())[0] == "430"
    return bob


async def test_a_client_gone_mid_ack_is_cleaned_up_and_its_work_announced(caplog):
    server = make_server()
    rec = Recorder(server)
    bob = await observed(DocSyncConsumer.as_asgi(server=server))
    gone = asyncio.Event()
    alice = await connected(vanishing(DocSyncConsumer.as_asgi(server=server), gone), "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()  # collaboration, ack
    assert await bob.recv() == collab(True)
    await alice.send("421" + dumps(["presence", {"docId": DOC, "presence": "typing"}]))
    await alice.recv()
    assert await bob.recv() == presence({"cli-alice": "typing"})
    for _ in range(2):  # the subscribes, bob's and alice's
        await rec.next("sync_request")
    gone.set()  # the ack of this sync cannot be sent
    await alice.send(sync(2, ["from alice"], clock=0))
    # The batch is stored and announced, and its sync_request fired.
    assert await bob.recv() == dirty()
    event = await rec.next("sync_request")
    assert (event["status"], event["res"]["clock"]) == ("success", 1)
    # Then the connection ends, once, and the others learn it.
    assert await bob.recv() == presence({"cli-alice": None})
    assert await bob.recv() == collab(False)
    event = await rec.next("client_disconnect", timeout=2)
    assert event["clientId"] == "cli-alice"
    await asyncio.sleep(0.1)
    assert rec.empty("client_disconnect")
    assert [m.client_id for m in await server.state.members(DOC)] == ["cli-bob"]
    assert await server.state.get_presence(DOC) == {}
    assert not [r for r in caplog.records if r.exc_info]
    await bob.close()


class Exploding(DocSyncConsumer):
    async def docsync_dirty(self, message):
        raise RuntimeError("a bug in a handler")


async def test_a_handler_exception_ends_the_connection_through_the_clean_up(caplog):
    server = make_server()
    rec = Recorder(server)
    bob = await observed(DocSyncConsumer.as_asgi(server=server))
    alice = await connected(Exploding.as_asgi(server=server), "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()
    assert await bob.recv() == collab(True)
    await rec.next("client_connect")
    with caplog.at_level(logging.ERROR, "docsync"):
        await bob.send(sync(2, ["from bob"], clock=0))  # alice's dirty handler raises
        assert (await bob.recv_json())[0] == "432"
        assert await alice.expect_close() == 1000
        assert await bob.recv() == presence({"cli-alice": None})
        assert await bob.recv() == collab(False)
    event = await rec.next("client_disconnect")
    assert (event["clientId"], event["reason"]) == ("cli-alice", "transport error")
    assert [m.client_id for m in await server.state.members(DOC)] == ["cli-bob"]
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1 and "handling docsync.dirty failed" in failures[0].getMessage()
    await bob.close()


async def test_a_ping_timeout_cleans_up_once():
    server = make_server(ping_interval=50, ping_timeout=50)
    rec = Recorder(server)
    bob = await connected(DocSyncConsumer.as_asgi(server=server), "bob")
    await bob.send(sync(0, snapshot=SNAP))
    # bob reads but never answers a ping
    event = await rec.next("client_disconnect", timeout=2)
    assert event["reason"] == "ping timeout"
    await asyncio.sleep(0.2)
    assert rec.empty("client_disconnect")
    assert await server.state.members(DOC) == []


async def acked(client: RawClient, ack_id: int) -> None:
    while (await client.recv_json())[0] != f"43{ack_id}":
        pass


async def test_a_client_that_stops_reading_is_held_then_dropped(caplog):
    caplog.set_level(logging.INFO, "docsync")
    server = make_server(max_unread=2000)
    rec = Recorder(server)
    reader = await connected(DocSyncConsumer.as_asgi(server=server), "rick")
    await reader.send(sync(0, snapshot=SNAP))
    await reader.recv(), await reader.recv()
    writer = await connected(DocSyncConsumer.as_asgi(server=server), "wanda")
    await writer.send(sync(0))
    await writer.recv(), await writer.recv()
    big = "x" * 500
    for n in range(12):  # 6 KB of presence for the reader, which answers no ping
        await writer.send(f"42{n + 1}" + dumps(["presence", {"docId": DOC, "presence": big}]))
        await acked(writer, n + 1)
    event = await rec.next("client_disconnect", timeout=2)
    assert (event["clientId"], event["reason"]) == ("cli-rick", "transport error")
    assert "it stopped reading" in caplog.text
    # What reached the reader stayed within the bound (plus one frame).
    frames = []
    while True:
        out = await reader.recv_output()
        if out["type"] == "websocket.close":
            break
        frames.append(out.get("text") or out.get("bytes"))
    assert sum(len(f) for f in frames) < 2000 + 2 * 600
    assert "2" in frames  # it was pinged as soon as it fell behind
    await writer.close()


async def test_held_frames_are_released_by_the_pong():
    server = make_server(max_unread=2000)
    reader = await connected(DocSyncConsumer.as_asgi(server=server), "rick")
    await reader.send(sync(0, snapshot=SNAP))
    await reader.recv(), await reader.recv()
    writer = await connected(DocSyncConsumer.as_asgi(server=server), "wanda")
    await writer.send(sync(0))
    await writer.recv(), await writer.recv()
    for n in range(6):
        value = {"n": n, "pad": "x" * 500}
        await writer.send(f"42{n + 1}" + dumps(["presence", {"docId": DOC, "presence": value}]))
        await acked(writer, n + 1)
    seen, pinged = [], False
    while len(seen) < 6:
        frame = await reader.recv()
        if frame == "2":
            pinged = True
            await reader.send("3")  # the pong releases what was held
        elif '"presence"' in frame:
            seen.append(frame)
    assert pinged
    assert [f'"n":{n},' in f for n, f in enumerate(seen)] == [True] * 6
    await reader.close()
    await writer.close()


async def test_server_close_cleans_up_every_connection_once():
    server = make_server()
    rec = Recorder(server)
    alice = await connected(DocSyncConsumer.as_asgi(server=server), "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await server.close()
    event = await rec.next("client_disconnect")
    assert event["reason"] == "server shutting down"
    assert await alice.expect_close() == 1000
    await asyncio.sleep(0.1)
    assert rec.empty("client_disconnect")
    assert await server.state.members(DOC) == []
