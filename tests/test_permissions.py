"""The default authorize through the consumer: roles, read-only connections,
revocation while connected, the retry-storm limit, signals with the document.

Users, DRF tokens and shares live in the test database; the server runs the
default authenticate and authorize on ``ORMProvider``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory, override_settings
from rest_framework.authtoken.models import Token

from docsync import signals
from docsync.auth import authenticate
from docsync.consumers import DocSyncConsumer
from docsync.models import Document, DocumentShare
from docsync.permissions import authorize
from docsync.providers.orm import ORMProvider
from docsync.server import DocSyncServer
from tests.test_consumer import A1, A2, B1, DOC, SNAP, collab, data, dirty, error, presence, sync
from tests.wsclient import RawClient, dumps, event

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

DENIED = {"type": "AuthorizationError", "message": "Access denied"}
MISSING = "01k0000000000000000000000m"


@pytest.fixture
def server():
    return DocSyncServer(provider=ORMProvider(), authenticate=authenticate, authorize=authorize)


@pytest.fixture
def app(server):
    return AuthMiddlewareStack(DocSyncConsumer.as_asgi(server=server))


def _world():
    users = get_user_model().objects
    people = {
        name: users.create_user(name) for name in ("alice", "bob", "carol", "dave", "eve", "gina")
    }
    people["root"] = users.create_superuser("root")
    team = Group.objects.create(name="team")
    people["gina"].groups.add(team)
    doc = Document.objects.create(doc_id=DOC, doc_type="doc", owner=people["alice"])
    DocumentShare.objects.create(document=doc, user=people["bob"], role="viewer")
    DocumentShare.objects.create(document=doc, user=people["carol"], role="editor")
    DocumentShare.objects.create(document=doc, user=people["dave"], role="manager")
    DocumentShare.objects.create(document=doc, group=team, role="editor")
    tokens = {name: Token.objects.create(user=user).key for name, user in people.items()}
    return people, tokens, team


@pytest.fixture
async def world():
    return await database_sync_to_async(_world)()


async def connect(app, token=None, name="x", headers=None) -> RawClient:
    client = RawClient(app, headers=headers)
    await client.open()
    payload = {"deviceId": f"dev-{name}", "clientId": f"cli-{name}", "claimedUserId": None}
    if token is not None:
        payload["token"] = token
    await client.send("40" + dumps(payload))
    assert (await client.recv()).startswith('40{"sid"')
    assert (await client.recv()).startswith('42["identity"')
    return client


async def owner_with_doc(app, world) -> RawClient:
    _, tokens, _ = world
    alice = await connect(app, tokens["alice"], "alice")
    await alice.send(sync(0, [A1], SNAP))
    assert await alice.recv() == collab(False)
    assert await alice.recv() == data(0, clock=1)
    return alice


EXPECTED = {  # name: (may read, may write, may delete)
    "alice": (True, True, True),
    "bob": (True, False, False),  # viewer
    "carol": (True, True, False),  # editor
    "dave": (True, True, True),  # manager
    "gina": (True, True, False),  # editor through the group
    "root": (True, True, True),  # superuser
    "eve": (False, False, False),  # stranger
}


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_each_role_does_exactly_what_it_may(app, world, name):
    _, tokens, _ = world
    may_read, may_write, may_delete = EXPECTED[name]
    c = await connect(app, tokens[name], name)
    response = await answer(c, "sync", {**_req(), "operations": []})
    if may_read:
        assert response["data"]["clock"] == 0
    else:
        assert response == {"error": DENIED}
    response = await answer(c, "sync", {**_req(), "operations": [B1]})
    if may_write:
        assert response["data"]["clock"] == 1
    else:
        assert response == {"error": DENIED}
    response = await c.call("delete-doc", {"docId": DOC})
    assert response == ({"success": True} if may_delete else {"success": False, "error": DENIED})
    await c.close()


async def answer(client: RawClient, name: str, data) -> dict:
    """Send a request; return its ack, skipping the events sent before it."""
    ack_id = await client.emit(name, data)
    while True:
        prefix, body = await client.recv_json()
        if prefix == f"43{ack_id}":
            return body[0]
        assert prefix == "42", (prefix, body)


def _req(doc=DOC):
    return {"type": "doc", "docId": doc, "serializedDoc": None, "clock": 0}


async def test_stranger_cannot_tell_private_from_missing(app, world):
    _, tokens, _ = world
    eve = await connect(app, tokens["eve"], "eve")
    for doc in (DOC, MISSING):
        assert await eve.call("sync", {**_req(doc), "operations": []}) == {"error": DENIED}
        assert await eve.call("delete-doc", {"docId": doc}) == {"success": False, "error": DENIED}
        refused = await eve.call("presence", {"docId": doc, "presence": 1})
        assert refused == {"error": DENIED}
    # Creating a new document is allowed, and makes eve its owner.
    created = await answer(eve, "sync", {**_req(MISSING), "operations": [B1]})
    assert created["data"]["clock"] == 1
    owner = await database_sync_to_async(lambda: Document.objects.get(doc_id=MISSING).owner)()
    assert owner.username == "eve"
    await eve.close()


async def test_viewer_reads_live_but_cannot_write(app, world):
    _, tokens, _ = world
    alice = await owner_with_doc(app, world)
    bob = await connect(app, tokens["bob"], "bob")
    await bob.send(sync(0))
    assert await bob.recv() == collab(True)
    assert await alice.recv() == collab(True)
    assert await bob.recv() == data(0, [A1], SNAP, clock=1)
    await alice.send(sync(1, [A2], SNAP, 1))
    assert await alice.recv() == data(1, clock=2)
    assert await bob.recv() == dirty()
    await alice.send(event("presence", {"docId": DOC, "presence": "here"}, 2))
    assert await alice.recv() == "432[{}]"
    assert await bob.recv() == presence({"cli-alice": "here"})
    assert await bob.call("presence", {"docId": DOC, "presence": "me"}) == {}
    assert await alice.recv() == presence({"cli-bob": "me"})
    await bob.send(sync(7, [B1], SNAP, 2))
    assert await bob.recv() == error(7, "AuthorizationError", "Access denied")
    assert await alice.nothing()
    await bob.close()
    await alice.close()


async def test_a_viewer_may_not_plant_a_snapshot(app, world):
    """Storing the client's snapshot (the server has none) is a write."""
    _, tokens, _ = world
    bob = await connect(app, tokens["bob"], "bob")
    planted = {**_req(), "operations": [], "serializedDoc": SNAP}
    assert await answer(bob, "sync", planted) == {"error": DENIED}
    carol = await connect(app, tokens["carol"], "carol")
    assert (await answer(carol, "sync", planted))["data"]["clock"] == 0
    # The server has a snapshot now: the same request is a plain read.
    assert (await answer(bob, "sync", planted))["data"]["clock"] == 0
    await carol.close()
    await bob.close()


# -- revocation ------------------------------------------------------------------


async def subscribed_pair(app, world, name="bob"):
    """alice (owner) and ``name`` both subscribed to DOC."""
    _, tokens, _ = world
    alice = await owner_with_doc(app, world)
    other = await connect(app, tokens[name], name)
    await other.send(sync(0))
    assert await other.recv() == collab(True)
    assert await alice.recv() == collab(True)
    assert (await other.recv()).startswith("430")
    return alice, other


async def test_removing_a_share_unsubscribes_at_once(app, world):
    people, _, _ = world
    alice, bob = await subscribed_pair(app, world)
    started = time.monotonic()
    await database_sync_to_async(lambda: DocumentShare.objects.get(user=people["bob"]).delete())()
    # bob left the document: alice hears its presence go and no collaborator.
    assert await alice.recv() == presence({"cli-bob": None})
    assert await alice.recv() == collab(False)
    assert time.monotonic() - started < 1.0
    await alice.send(sync(1, [A2], SNAP, 1))
    assert await alice.recv() == data(1, clock=2)
    assert await bob.nothing(0.2)  # no dirty
    await bob.send(sync(3, snapshot=SNAP, clock=1))
    assert await bob.recv() == error(3, "AuthorizationError", "Access denied")
    await close(alice, bob)


async def test_downgrade_keeps_reading_but_refuses_writes(app, world):
    people, _, _ = world
    alice, carol = await subscribed_pair(app, world, "carol")
    await database_sync_to_async(
        lambda: DocumentShare.objects.filter(user=people["carol"]).update(role="viewer")
    )()
    await carol.send(sync(3, [B1], SNAP, 1))
    assert await carol.recv() == error(3, "AuthorizationError", "Access denied")
    await alice.send(sync(1, [A2], SNAP, 1))
    assert await alice.recv() == data(1, clock=2)
    assert await carol.recv() == dirty()  # still subscribed: a viewer now
    await close(alice, carol)


async def test_leaving_the_group_revokes_group_shares(app, world):
    people, _, team = world
    alice, gina = await subscribed_pair(app, world, "gina")
    await database_sync_to_async(lambda: people["gina"].groups.remove(team))()
    assert await alice.recv() == presence({"cli-gina": None})
    assert await alice.recv() == collab(False)
    await close(alice, gina)


async def test_deleting_the_group_share_revokes_its_members(app, world):
    _, _, team = world
    alice, gina = await subscribed_pair(app, world, "gina")
    await database_sync_to_async(lambda: DocumentShare.objects.get(group=team).delete())()
    assert await alice.recv() == presence({"cli-gina": None})
    await close(alice, gina)


async def test_deactivated_user_is_disconnected(app, server, world):
    people, _, _ = world
    reasons = []
    server.on_client_disconnect(lambda e: reasons.append(e["reason"]))
    alice, bob = await subscribed_pair(app, world)

    def deactivate():
        bob_user = people["bob"]
        bob_user.is_active = False
        bob_user.save()

    await database_sync_to_async(deactivate)()
    assert await bob.recv() == "41"  # Socket.IO DISCONNECT: the client does not reconnect
    assert await bob.expect_close() == 1000
    assert reasons == ["access revoked: user deactivated"]
    assert await alice.recv() == presence({"cli-bob": None})
    await alice.close()


async def test_logout_closes_that_session_only(app, world):
    people, tokens, _ = world
    session = SessionStore()
    session["_auth_user_id"] = str(people["bob"].pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = people["bob"].get_session_auth_hash()
    await database_sync_to_async(session.save)()
    cookie = [(b"cookie", f"sessionid={session.session_key}".encode())]
    by_session = await connect(app, None, "bob-browser", headers=cookie)
    by_token = await connect(app, tokens["bob"], "bob-cli")

    def log_out():
        request = RequestFactory().get("/")
        request.session = SessionStore(session.session_key)
        request.user = people["bob"]
        logout(request)

    await database_sync_to_async(log_out)()
    assert await by_session.recv() == "41"
    assert await by_session.expect_close() == 1000
    pulled = await answer(by_token, "sync", {**_req(), "operations": []})
    assert pulled["data"]["clock"] == 0  # the token connection goes on
    await by_token.close()


# -- the retry storm -----------------------------------------------------------------


@override_settings(DOCSYNC={"ERROR_BURST": 5, "ERROR_WINDOW": 1.0, "ERROR_DELAY": 0.2})
async def test_refused_writes_are_slowed_down(app, world):
    _, tokens, _ = world
    bob = await connect(app, tokens["bob"], "bob")
    write = {**_req(), "operations": [B1]}
    for ack_id in range(15):  # as the official client does: again at once, on every error
        await bob.send(event("sync", write, ack_id))
    started = time.monotonic()
    times = []
    for _ in range(15):
        prefix, body = await bob.recv_json(timeout=3)
        assert body[0] == {"error": DENIED}
        times.append(time.monotonic() - started)
    # 5 at once, then one per 0.2 s: about 10 answers in the first second, not 15.
    assert sum(t < 1.0 for t in times) <= 11, times
    assert times[-1] >= 1.6, times
    await bob.close()


# -- signals ---------------------------------------------------------------------------


async def test_signals_carry_the_user_and_the_document(app, world):
    people, tokens, _ = world
    got = asyncio.Queue()

    async def receiver(sender, **kwargs):
        await got.put(kwargs)

    signals.sync_finished.connect(receiver)
    try:
        alice = await owner_with_doc(app, world)
        kwargs = await asyncio.wait_for(got.get(), 2)
        assert kwargs["user"] == people["alice"]
        assert isinstance(kwargs["document"], Document) and kwargs["document"].doc_id == DOC
        await alice.close()
    finally:
        signals.sync_finished.disconnect(receiver)


async def close(*clients):
    for c in clients:
        await c.close()


async def test_other_providers_go_by_the_owner(world):
    """With the in-memory provider there are no rows: the owner alone has access."""
    from docsync.providers.memory import InMemoryProvider

    _, tokens, _ = world
    server = DocSyncServer(provider=InMemoryProvider(), authenticate=authenticate)
    app = DocSyncConsumer.as_asgi(server=server)
    eve = await connect(app, tokens["eve"], "eve")
    assert (await answer(eve, "sync", {**_req(MISSING), "operations": [B1]}))["data"]
    assert (await answer(eve, "sync", {**_req(MISSING), "operations": []}))["data"]
    bob = await connect(app, tokens["bob"], "bob")
    assert await answer(bob, "sync", {**_req(MISSING), "operations": []}) == {"error": DENIED}
    await close(eve, bob)
