"""The Django signals of ``docsync.signals`` carry the listeners' data."""

import asyncio

import pytest

from docsync import signals
from tests.test_consumer import A1, DOC, SNAP, collab, connected, data, sync
from tests.wsclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

SIGNALS = {
    "client_connected": signals.client_connected,
    "client_disconnected": signals.client_disconnected,
    "doc_subscribed": signals.doc_subscribed,
    "doc_unsubscribed": signals.doc_unsubscribed,
    "sync_finished": signals.sync_finished,
}


@pytest.fixture
def received():
    """Async receivers on every signal, queueing their kwargs; a broken one too."""
    queues = {name: asyncio.Queue() for name in SIGNALS}
    receivers = []

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    for name, signal in SIGNALS.items():

        async def receiver(sender, _name=name, **kwargs):
            await queues[_name].put((sender, kwargs))

        signal.connect(broken, weak=False)
        signal.connect(receiver, weak=False)
        receivers.append((signal, receiver))
    yield queues
    for signal, receiver in receivers:
        signal.disconnect(receiver)
        signal.disconnect(broken)


async def nxt(queues, name):
    sender, kwargs = await asyncio.wait_for(queues[name].get(), 2)
    kwargs.pop("signal")
    return sender, kwargs


async def test_signals_carry_the_event_fields(server, app, received, caplog):
    alice = await connected(app, "alice")
    sender, kw = await nxt(received, "client_connected")
    assert sender.__name__ == "DocSyncServer" and kw.pop("server") is server
    assert kw == {
        "user_id": "alice",
        "device_id": "dev-alice",
        "client_id": "cli-alice",
        "context": {"token": "valid-alice"},
        "user": None,
    }
    await alice.send(sync(0, [A1], SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)  # the broken receiver broke nothing
    _, kw = await nxt(received, "doc_subscribed")
    assert (kw["doc_id"], kw["user_id"]) == (DOC, "alice")
    _, kw = await nxt(received, "sync_finished")
    assert kw["status"] == "success" and kw["doc_id"] == DOC
    assert kw["res"] == {"operations": [], "serializedDoc": None, "clock": 1}
    assert (kw["clients_count"], kw["devices_count"]) == (1, 1)
    assert kw["req"]["operations"] == [A1]
    await alice.close()
    _, kw = await nxt(received, "doc_unsubscribed")
    assert (kw["doc_id"], kw["reason"]) == (DOC, "transport close")
    _, kw = await nxt(received, "client_disconnected")
    assert (kw["user_id"], kw["reason"]) == ("alice", "transport close")
    assert "receiver bug" in caplog.text


async def test_refused_connection_signal(app, received):
    c = RawClient(app)
    await c.open()
    await c.send('40{"deviceId":"dev-x","clientId":"cli-x","token":"nope"}')
    assert await c.recv() == '44{"message":"Authentication failed: invalid credentials"}'
    _, kw = await nxt(received, "client_disconnected")
    assert kw["reason"] == "Authentication failed: invalid credentials"
    assert (kw["user_id"], kw["device_id"], kw["client_id"]) == ("unknown", "dev-x", "cli-x")
    assert received["client_connected"].empty()
    await c.close()
