"""Restoring a document: connected clients hear ``dirty`` after the commit, then get it.

Through the Channels consumer (``WebsocketCommunicator`` clients on the
in-memory channel layer) and the documents admin (the timeline, the state
page, the restore button).
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from docsync import signals
from docsync.bindings import BindingRegistry
from docsync.consumers import DocSyncConsumer
from docsync.history import restore_document
from docsync.models import Document
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider
from docsync.server import DocSyncServer
from docsync.squash import squash_document
from tests.auth import token_authenticate
from tests.bindings import ListBinding, RenderingBinding
from tests.wsclient import RawClient, ack, event

DOC = "01k0000000000000000000history"
pytestmark = pytest.mark.django_db(transaction=True)


def registry() -> BindingRegistry:
    result = BindingRegistry()
    result.register("list", ListBinding())
    result.register("fancy", RenderingBinding())
    return result


def sync(ack_id, ops=(), snapshot=None, clock=0):
    payload = {
        "type": "list",
        "docId": DOC,
        "operations": list(ops),
        "serializedDoc": snapshot,
        "clock": clock,
    }
    return event("sync", payload, ack_id)


def data(ack_id, ops=(), snapshot=None, clock=0):
    body = {"docId": DOC, "operations": list(ops), "serializedDoc": snapshot, "clock": clock}
    return ack(ack_id, {"data": body})


async def drain(client: RawClient) -> list:
    """Every frame the client has been sent until it is quiet for a moment."""
    frames = []
    while not await client.nothing(0.3):
        frames.append(await client.recv())
    return frames


async def connected(app, user) -> RawClient:
    client = RawClient(app)
    await client.connect(user)
    return client


@pytest.mark.asyncio
async def test_every_connected_client_follows_a_restore_after_its_commit():
    provider = ORMProvider()
    server = DocSyncServer(
        doc_binding={"list": ListBinding()},
        provider=provider,
        authenticate=token_authenticate,
        authorize=lambda event: True,
    )
    app = DocSyncConsumer.as_asgi(server=server)
    alice, bob = await connected(app, "alice"), await connected(app, "bob")
    await alice.send(sync(0, ["a1"]))
    assert data(0, clock=1) in await drain(alice)
    await bob.send(sync(0, ["b1"]))
    assert data(0, ["a1"], clock=2) in await drain(bob)
    assert event("dirty", {"docId": DOC}) in await drain(alice)
    received = []
    signals.doc_restored.connect(lambda **kw: received.append(kw), weak=False)

    def restore_in_a_transaction():
        with transaction.atomic():
            restore_document(provider, registry(), DOC, 1, None)
            # Nothing sent before the commit.
            assert received == []

    try:
        await sync_to_async(restore_in_a_transaction)()
    finally:
        signals.doc_restored.receivers.clear()
    dirty = event("dirty", {"docId": DOC})
    assert await alice.recv() == dirty and await bob.recv() == dirty
    assert [(r["doc_id"], r["clock"], r["restored_from"]) for r in received] == [(DOC, 3, 1)]
    # Each syncs with its clock, older than the restored snapshot's: it gets the snapshot.
    await alice.send(sync(1, [], ["a1"], clock=1))
    assert await alice.recv() == data(1, [], ["a1"], 3)
    await bob.send(sync(1, ["b2"], ["a1", "b1"], clock=2))
    assert await bob.recv() == data(1, [], ["a1"], 4)
    assert await alice.recv() == dirty
    await alice.send(sync(2, [], ["a1"], clock=3))
    assert await alice.recv() == data(2, ["b2"], clock=4)
    await alice.close()
    await bob.close()


# -- the admin -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def bindings():
    with override_settings(
        DOCSYNC={
            "BINDINGS": {
                "list": "tests.bindings.ListBinding",
                "fancy": "tests.bindings.RenderingBinding",
            }
        }
    ):
        yield


@pytest.fixture
def doc():
    alice = get_user_model().objects.create_user(username="alice")
    provider = ORMProvider()
    origin = Origin(user_id=str(alice.pk), device_id="alice-laptop", client_id="tab-1")
    for value in ("milk", "eggs", "bread"):
        with provider.transaction("readwrite", "fancy-doc", doc_type="fancy") as tx:
            tx.save_operations([value], origin)
        if value == "eggs":
            squash_document(provider, registry(), "fancy-doc")
    return Document.objects.get(doc_id="fancy-doc")


def change_url(doc) -> str:
    return reverse("admin:docsync_document_change", args=[doc.pk])


def test_the_change_page_shows_the_timeline(admin_client, doc):
    page = admin_client.get(change_url(doc)).content.decode()
    timeline = page[page.index('id="docsync-timeline"') :]
    assert timeline.count('class="docsync-entry"') == 3
    assert "alice" in timeline and "alice-laptop" in timeline and "(squashed)" in timeline
    assert reverse("admin:docsync_document_state", args=[doc.pk, 2]) in timeline
    assert 'name="csrfmiddlewaretoken"' in timeline and 'name="clock" value="1"' in timeline


def test_the_state_page_renders_an_old_state_with_the_binding(admin_client, doc):
    page = admin_client.get(reverse("admin:docsync_document_state", args=[doc.pk, 2]))
    assert "LIST: milk | eggs" in page.content.decode()
    missing = admin_client.get(reverse("admin:docsync_document_state", args=[doc.pk, 9]))
    assert missing.status_code == 302


def test_restore_from_the_admin_is_a_new_change_by_the_admin_user(admin_client, admin_user, doc):
    url = reverse("admin:docsync_document_restore", args=[doc.pk])
    assert admin_client.get(url).status_code == 403  # POST only
    response = admin_client.post(url, {"clock": "1"}, follow=True)
    assert "to its state at clock 1, as clock 4" in response.content.decode()
    doc.refresh_from_db()
    assert (doc.get_snapshot(), doc.snapshot_clock, doc.latest_clock) == (["milk"], 4, 4)
    version = doc.versions.get(clock=4)
    assert (version.kind, version.user, version.restored_from) == ("restore", admin_user, 1)
    page = admin_client.get(change_url(doc)).content.decode()
    assert "restored clock 1" in page


def test_restoring_needs_the_change_permission_and_csrf(client, doc):
    viewer = get_user_model().objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_document"))
    client.force_login(viewer)
    url = reverse("admin:docsync_document_restore", args=[doc.pk])
    assert client.post(url, {"clock": "1"}).status_code == 403
    page = client.get(change_url(doc)).content.decode()
    assert 'class="docsync-entry"' in page and "Restore</button>" not in page
    viewer.user_permissions.add(Permission.objects.get(codename="change_document"))
    client.handler.enforce_csrf_checks = True
    assert client.post(url, {"clock": "1"}).status_code == 403  # no CSRF token
    doc.refresh_from_db()
    assert doc.latest_clock == 3
    assert json.loads(json.dumps(doc.get_snapshot())) == ["milk", "eggs"]


def test_server_listeners_hear_restores_until_removed():
    from docsync.providers.memory import InMemoryProvider

    provider = InMemoryProvider()
    server = DocSyncServer(provider=provider, authorize=lambda event: True)
    heard = []
    remove = server.on_doc_restore(heard.append)
    with provider.transaction("readwrite", DOC, doc_type="list") as tx:
        tx.save_operations(["a"], Origin(user_id="7"))
    restore_document(provider, registry(), DOC, 0, "7")
    assert heard == [{"userId": "7", "docId": DOC, "clock": 2, "restoredFrom": 0}]
    assert heard[0].restored_from == 0
    remove()
    restore_document(provider, registry(), DOC, 1, "7")
    assert len(heard) == 1
