"""Storage outages at the consumer (issue 9, point 7); the real one is in test_outage_e2e.py.

A provider that raises ``StorageUnavailable`` while "down" (as
``ORMProvider`` does when its connection is lost), requests through the
database hop: each answer is the retryable ``DatabaseError`` saying storage
is unavailable, one log line when the outage starts and one when it ends,
and the first request after succeeds. CONNECT during an outage closes the
transport (1013) rather than refusing, so clients come back.
"""

from __future__ import annotations

import logging

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.exceptions import StorageUnavailable
from docsync.outage import StorageOutage
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.auth import token_authenticate
from tests.test_consumer import connected, sync
from tests.wsclient import RawClient, dumps

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

UNAVAILABLE = {"type": "DatabaseError", "message": "Storage is unavailable; try again shortly."}


class FlakyProvider(InMemoryProvider):
    """In memory, but through the database hop, and down while ``down``."""

    blocking = True
    down = False

    def transaction(self, *args, **kwargs):
        if self.down:
            raise StorageUnavailable() from OSError("connection refused (internal detail)")
        return super().transaction(*args, **kwargs)


@pytest.fixture(autouse=True)
def fresh_outage_state():
    StorageOutage.down_since, StorageOutage.refused = None, 0
    yield
    StorageOutage.down_since, StorageOutage.refused = None, 0


async def test_an_outage_is_answered_retryably_and_logged_once_each_way(caplog):
    caplog.set_level(logging.INFO, "docsync")
    provider = FlakyProvider()
    server = DocSyncServer(
        provider=provider, authenticate=token_authenticate, authorize=lambda e: True
    )
    alice = await connected(DocSyncConsumer.as_asgi(server=server), "alice")
    await alice.send(sync(0, ["before"]))
    await alice.recv(), await alice.recv()
    provider.down = True
    for n in range(1, 6):
        await alice.send(sync(n, ["during"], clock=1))
        prefix, body = await alice.recv_json()
        assert (prefix, body) == (f"43{n}", [{"error": UNAVAILABLE}])
    provider.down = False
    await alice.send(sync(9, ["after"], clock=1))
    prefix, body = await alice.recv_json()
    assert prefix == "439" and body[0]["data"]["clock"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("docsync")]
    assert messages[0] == (
        "docsync: storage is unavailable (OSError: connection refused (internal detail)); "
        "requests are answered with a retryable DatabaseError until it is back."
    )
    assert messages[1].startswith("docsync: storage is back after 0.")
    assert messages[1].endswith(" s (5 requests answered as unavailable).")
    assert sum("storage is unavailable" in m for m in messages) == 1
    assert sum("storage is back" in m for m in messages) == 1
    assert not [r for r in caplog.records if r.exc_info]
    await alice.close()


async def test_connect_during_an_outage_closes_the_transport_without_details():
    def authenticate(request):
        raise StorageUnavailable() from OSError('FATAL: database "x" does not exist')

    server = DocSyncServer(provider=InMemoryProvider(), authenticate=authenticate)
    refused = []
    server.on_client_disconnect(refused.append)
    client = RawClient(DocSyncConsumer.as_asgi(server=server))
    await client.open()
    await client.send("40" + dumps({"deviceId": "d", "clientId": "c", "token": "t"}))
    out = await client.recv_output()
    assert out == {
        "type": "websocket.close",
        "code": 1013,
        "reason": "Storage is unavailable; try again shortly.",
    }
    assert refused[0]["reason"] == "Storage is unavailable; try again shortly."
    assert (refused[0]["deviceId"], refused[0]["clientId"]) == ("d", "c")


async def test_an_exception_in_authenticate_is_logged_not_sent(caplog):
    def authenticate(request):
        raise RuntimeError("SELECT secret FROM users -- internal")

    server = DocSyncServer(provider=InMemoryProvider(), authenticate=authenticate)
    client = RawClient(DocSyncConsumer.as_asgi(server=server))
    await client.open()
    await client.send("40" + dumps({"deviceId": "d", "clientId": "c", "token": "t"}))
    assert await client.recv() == '44{"message":"Authentication error: internal server error"}'
    assert "SELECT secret" in caplog.text  # in the log, for the operator
    await client.close()
