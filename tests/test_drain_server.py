"""``docsync.drain`` on consumers in this process (``WebsocketCommunicator``).

A drained connection is closed with 1012 and reason ``server shutting
down``, never with a Socket.IO DISCONNECT; one in the middle of a request is
closed after its answer went out; a new WebSocket is refused while draining;
every connection is dropped. The end-to-end versions, on
uvicorn and daphne processes, are in ``test_drain.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.drain import drain
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.test_consumer import SNAP, connected, sync
from tests.test_lifecycle import make_server
from tests.test_server import Recorder
from tests.wsclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def frames_until_close(client: RawClient) -> tuple[list[str], int]:
    """The text frames a client receives until the close, and the close code."""
    frames = []
    while True:
        out = await client.recv_output(5)
        if out["type"] == "websocket.close":
            return frames, out.get("code", 1000)
        if out.get("text") is not None and out["text"] != "2":
            frames.append(out["text"])


async def test_a_request_in_flight_is_answered_before_its_transport_drops():
    entered, release = asyncio.Event(), asyncio.Event()

    async def authorize(event):
        if event.get("req", {}).get("operations"):
            entered.set()
            await release.wait()
        return True

    server = DocSyncServer(
        provider=InMemoryProvider(), authenticate=token_authenticate, authorize=authorize
    )
    rec = Recorder(server)
    alice = await connected(DocSyncConsumer.as_asgi(server=server), "alice")
    await alice.send(sync(0, snapshot=SNAP))
    await alice.recv(), await alice.recv()  # collaboration, ack
    await rec.next("sync_request")
    await alice.send(sync(1, ["typed"], clock=0))
    await entered.wait()
    draining = asyncio.ensure_future(drain(server, 0))
    await asyncio.sleep(0.1)
    assert server.draining and not draining.done()  # waits for the answer
    release.set()
    frames, code = await frames_until_close(alice)
    assert frames[0].startswith("431[") and '"clock":1' in frames[0]  # the ack went out
    assert "41" not in frames  # no Socket.IO DISCONNECT
    assert code == 1012
    assert (await rec.next("client_disconnect"))["reason"] == "server shutting down"
    assert await draining >= 0
    assert server.connections == 0


async def test_every_connection_is_dropped_and_newcomers_refused():
    server = make_server()
    app = DocSyncConsumer.as_asgi(server=server)
    rec = Recorder(server)
    clients = [await connected(app, f"user{n}") for n in range(3)]
    draining = asyncio.ensure_future(drain(server, 0.6))
    ends = [(await rec.next("client_disconnect"))["userId"] for _ in clients]
    newcomer = RawClient(app)
    connected_, _ = await newcomer.comm.connect(2)
    assert not connected_  # refused while draining
    await draining
    assert sorted(ends) == ["user0", "user1", "user2"]
    for client in clients:
        frames, code = await frames_until_close(client)
        assert (frames, code) == ([], 1012)
