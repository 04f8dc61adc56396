"""OPEN_DOCUMENTS: unshared documents are open to every active user until
they are shared (or marked private), then private for good, live."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.authtoken.models import Token

from docsync.auth import authenticate
from docsync.bindings import get_binding_registry
from docsync.consumers import DocSyncConsumer
from docsync.models import Document, DocumentShare
from docsync.permissions import authorize
from docsync.providers.orm import ORMProvider
from docsync.server import DocSyncServer
from tests.test_consumer import A1, B1, DOC, SNAP
from tests.test_permissions import DENIED, _req, answer, connect

pytestmark = [pytest.mark.django_db(transaction=True)]  # async tests: asyncio_mode=auto


@pytest.fixture(autouse=True)
def open_documents():
    with override_settings(DOCSYNC={"OPEN_DOCUMENTS": True}):
        yield


@pytest.fixture
def app():
    server = DocSyncServer(provider=ORMProvider(), authenticate=authenticate, authorize=authorize)
    return AuthMiddlewareStack(DocSyncConsumer.as_asgi(server=server))


@pytest.fixture
async def tokens():
    def make():
        users = get_user_model().objects
        return {
            n: Token.objects.create(user=users.create_user(n)).key
            for n in ("alice", "bob", "carol")
        }

    return await database_sync_to_async(make)()


async def created_by_alice(app, tokens):
    alice = await connect(app, tokens["alice"], "alice")
    res = await answer(alice, "sync", {**_req(), "operations": [A1], "serializedDoc": SNAP})
    assert res["data"]["clock"] == 1
    return alice


async def test_unshared_document_is_open_to_every_user(app, tokens):
    alice = await created_by_alice(app, tokens)
    bob = await connect(app, tokens["bob"], "bob")
    res = await answer(bob, "sync", {**_req(), "operations": [B1]})
    assert res["data"]["operations"] == [A1] and res["data"]["clock"] == 2
    assert await bob.call("delete-doc", {"docId": DOC}) == {"success": False, "error": DENIED}
    await alice.close()
    await bob.close()


async def test_first_share_makes_it_private_live(app, tokens):
    alice = await created_by_alice(app, tokens)
    bob = await connect(app, tokens["bob"], "bob")
    assert "data" in await answer(bob, "sync", {**_req(), "operations": []})

    def share():
        doc = Document.objects.get(doc_id=DOC)
        carol = get_user_model().objects.get(username="carol")
        DocumentShare.objects.create(document=doc, user=carol, role="viewer")
        return Document.objects.get(doc_id=DOC).private

    assert await database_sync_to_async(share)()
    # bob's connection is told to check again and leaves the document: alice
    # sees his presence go away and is alone again.
    seen = []
    while ("presence", {"docId": DOC, "presence": {"cli-bob": None}}) not in seen:
        prefix, body = await alice.recv_json()
        seen.append(tuple(body))
    prefix, body = await alice.recv_json()
    assert body == ["collaboration", {"docId": DOC, "hasCollaborators": False}]
    assert await answer(bob, "sync", {**_req(), "operations": []}) == {"error": DENIED}
    carol = await connect(app, tokens["carol"], "carol")
    assert "data" in await answer(carol, "sync", {**_req(), "operations": []})
    await alice.close()
    await bob.close()
    await carol.close()


async def test_shares_made_without_signals_still_make_it_private(app, tokens):
    alice = await created_by_alice(app, tokens)

    def bulk_share():
        doc = Document.objects.get(doc_id=DOC)
        carol = get_user_model().objects.get(username="carol")
        DocumentShare.objects.bulk_create([DocumentShare(document=doc, user=carol, role="viewer")])

    await database_sync_to_async(bulk_share)()
    bob = await connect(app, tokens["bob"], "bob")
    assert await answer(bob, "sync", {**_req(), "operations": []}) == {"error": DENIED}
    await alice.close()
    await bob.close()


async def test_closed_by_default(tokens):
    server = DocSyncServer(provider=ORMProvider(), authenticate=authenticate, authorize=authorize)
    app = AuthMiddlewareStack(DocSyncConsumer.as_asgi(server=server))
    with override_settings(DOCSYNC={}):
        alice = await created_by_alice(app, tokens)
        bob = await connect(app, tokens["bob"], "bob")
        assert await answer(bob, "sync", {**_req(), "operations": []}) == {"error": DENIED}
        await alice.close()
        await bob.close()


def test_a_document_created_meanwhile_is_judged_again():
    """Two users create one docId at once: the second, authorized as a creator
    of a missing document, finds it existing under the lock and must retry."""
    from docsync.exceptions import StorageError
    from docsync.identity import Identity
    from docsync.providers.base import Origin
    from docsync.requests import SyncRequest
    from docsync.sync import sync_document

    provider = ORMProvider()
    users = get_user_model().objects
    alice, bob = users.create_user("alice2"), users.create_user("bob2")
    server = DocSyncServer(provider=provider, authenticate=authenticate, authorize=authorize)
    identity = Identity(user_id=str(bob.pk), context={"user_pk": bob.pk})
    req = SyncRequest("doc", DOC, [B1], None, 0)
    event = server._authorize("sync", req.as_wire(), identity)
    assert event["document"] is None  # bob was allowed as a creator
    # alice creates it before bob's request takes the lock
    sync_document(
        provider,
        SyncRequest("doc", DOC, [A1], SNAP, 0),
        Origin(str(alice.pk), "d", "c"),
        get_binding_registry(),
    )
    with pytest.raises(StorageError, match="created by another request"):
        sync_document(
            provider, req, Origin(str(bob.pk), "d2", "c2"), get_binding_registry(), expect_new=True
        )
    # Judged again on bob's retry: alice's document, open here (unshared) ...
    assert server._authorize("sync", req.as_wire(), identity)["document"] is not None
    # ... and private to her by the library's default.
    with override_settings(DOCSYNC={}), pytest.raises(Exception, match="Access denied"):
        server._authorize("sync", req.as_wire(), identity)
