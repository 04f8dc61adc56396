"""Permissions decided once per connection and document (``docsync.grants.Grants``).

The default authorize runs on a connection's first request for a document;
later reads (and the owner's writes) are not asked again until a revocation
message clears what the connection holds. Writes by shares are decided
every time, and an owner's writes check the owner on the row they lock.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async

from docsync.consumers import DocSyncConsumer
from docsync.models import Document, DocumentShare
from docsync.permissions import DocumentPermissions
from docsync.providers.orm import ORMProvider
from docsync.server import DocSyncServer
from tests.test_consumer import A1, B1, DOC
from tests.test_permissions import DENIED, _req, _world, answer, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class CountingPermissions(DocumentPermissions):
    """The default authorize, counting its decisions."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event):
        self.calls += 1
        return super().__call__(event)


@pytest.fixture
def authorize():
    return CountingPermissions()


@pytest.fixture
def app(authorize):
    from docsync.auth import authenticate

    server = DocSyncServer(provider=ORMProvider(), authenticate=authenticate, authorize=authorize)
    return AuthMiddlewareStack(DocSyncConsumer.as_asgi(server=server))


@pytest.fixture
async def world():
    return await database_sync_to_async(_world)()


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def pull(clock=0):
    return {**_req(), "operations": [], "clock": clock}


def write(op, clock):
    return {**_req(), "operations": [op], "clock": clock}


async def test_reads_are_decided_once(app, authorize, world):
    _, tokens, _ = world
    bob = await connect(app, tokens["bob"], "bob")  # a viewer
    for _ in range(3):
        assert (await answer(bob, "sync", pull()))["data"]["clock"] == 0
    assert authorize.calls == 1
    # A write is decided (and refused) every time.
    for _ in range(2):
        assert await answer(bob, "sync", write(B1, 0)) == {"error": DENIED}
    assert authorize.calls == 3
    await bob.close()


async def test_owner_writes_are_decided_once_and_checked_on_the_row(app, authorize, world):
    people, tokens, _ = world
    alice = await connect(app, tokens["alice"], "alice")
    for clock in range(3):
        assert (await answer(alice, "sync", write([clock], clock)))["data"]["clock"] == clock + 1
    assert authorize.calls == 1
    # The owner changes without a signal: her next write is decided again, and refused.
    await database_sync_to_async(
        lambda: Document.objects.filter(doc_id=DOC).update(owner=people["eve"])
    )()
    assert await answer(alice, "sync", write(["late"], 3)) == {"error": DENIED}
    assert authorize.calls == 2
    assert await answer(alice, "sync", write(["later"], 3)) == {"error": DENIED}
    await alice.close()


async def test_a_revocation_clears_what_the_connection_was_allowed(app, authorize, world):
    people, tokens, _ = world
    carol = await connect(app, tokens["carol"], "carol")  # an editor
    assert (await answer(carol, "sync", pull()))["data"]["clock"] == 0
    assert (await answer(carol, "sync", pull()))["data"]["clock"] == 0
    assert authorize.calls == 1

    def downgrade():
        share = DocumentShare.objects.get(user=people["carol"])
        share.role = "viewer"
        share.save()  # a signal: the connection is told to check again

    await database_sync_to_async(downgrade)()
    await wait_until(lambda: authorize.calls == 2)  # the re-check of the subscription
    assert (await answer(carol, "sync", pull()))["data"]["clock"] == 0
    assert authorize.calls == 3
    assert await answer(carol, "sync", write(A1, 0)) == {"error": DENIED}
    await carol.close()


async def test_a_share_created_after_a_refusal_counts_at_once(app, world):
    people, tokens, _ = world
    eve = await connect(app, tokens["eve"], "eve")
    assert await answer(eve, "sync", pull()) == {"error": DENIED}

    def share():
        doc = Document.objects.get(doc_id=DOC)
        DocumentShare.objects.create(document=doc, user=people["eve"], role="viewer")

    await database_sync_to_async(share)()
    assert (await answer(eve, "sync", pull()))["data"]["clock"] == 0
    await eve.close()
