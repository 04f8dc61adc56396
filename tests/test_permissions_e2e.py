"""Django permissions through the real server: daphne, PostgreSQL, Redis.

The server runs the default authenticate (DRF tokens, sessions) and the
default authorize on ``ORMProvider``. Users, shares, tokens and sessions are
made in the server's database by ``manage.py shell``, which is also where
access is revoked: its signals reach the server through the Redis channel
layer, as they would from an admin process or a worker.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests import sioclient
from tests.liveserver import LiveServer, manage
from tests.services import require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.asyncio]

DENIED = {"type": "AuthorizationError", "message": "Access denied"}
EXPECTED = {  # name: (may read, may write, may delete)
    "alice": (True, True, True),  # owner
    "bob": (True, False, False),  # viewer
    "carol": (True, True, False),  # editor
    "dave": (True, True, True),  # manager
    "gina": (True, True, False),  # editor through her group
    "root": (True, True, True),  # superuser
    "eve": (False, False, False),  # stranger
}
REVOKED = ("frank", "hana", "ivan")  # viewers whose access the revocation tests take away

SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from rest_framework.authtoken.models import Token
from docsync.models import Document, DocumentShare

names = %(names)r
users = {n: get_user_model().objects.create_user(n) for n in names if n != "root"}
users["root"] = get_user_model().objects.create_superuser("root")
team = Group.objects.create(name="team")
users["gina"].groups.add(team)
for doc_id in %(docs)r:
    doc = Document.objects.create(doc_id=doc_id, doc_type="doc", owner=users["alice"])
    DocumentShare.objects.create(document=doc, group=team, role="editor")
    for name, role in [("bob", "viewer"), ("carol", "editor"), ("dave", "manager")] + [
        (n, "viewer") for n in %(revoked)r
    ]:
        DocumentShare.objects.create(document=doc, user=users[name], role=role)
out = {"tokens": {}, "sessions": {}}
for name, user in users.items():
    out["tokens"][name] = Token.objects.create(user=user).key
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    out["sessions"][name] = session.session_key
print(json.dumps(out))
"""

# Each revocation runs in one transaction that first registers a callback
# printing the commit time: on_commit callbacks run in order, so it is taken
# before docsync's notification goes out.
REVOKE = """
import json, time
from django.db import transaction
with transaction.atomic():
    transaction.on_commit(lambda: print(json.dumps(time.time())))
%s
"""


class Client(sioclient.Client):
    """The recording client, with cookies and arrival times."""

    def __init__(self, url: str, name: str, *, token=None, session=None, tag=""):
        auth = {"deviceId": f"dev-{name}{tag}", "clientId": f"cli-{name}{tag}"}
        auth["claimedUserId"] = None
        if token is not None:
            auth["token"] = token
        super().__init__(url, auth=auth)
        self.headers = {"Cookie": f"sessionid={session}"} if session else {}
        self.arrivals: list[tuple[float, str, object]] = []

    async def _record(self, name, data=None):
        self.arrivals.append((time.time(), name, data))
        await super()._record(name, data)

    async def connect(self) -> Client:
        await self.sio.connect(
            self.url, headers=self.headers, transports=["websocket"], auth=self.auth, wait_timeout=5
        )
        self.identity = await self.wait_for("identity")
        return self

    def arrived(self, name: str, data=None) -> float:
        return next(t for t, n, d in self.arrivals if n == name and (data is None or d == data))


def pull(doc_id: str) -> dict:
    return {"type": "doc", "docId": doc_id, "operations": [], "serializedDoc": None, "clock": 0}


def write(doc_id: str, op: str) -> dict:
    return {**pull(doc_id), "operations": [op]}


@pytest.fixture(scope="module")
def env(pg_url):
    redis = require_redis().rsplit("/", 1)[0] + "/7"  # a database of its own
    return {
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_DATABASE_URL": pg_url,
        "E2E_REDIS_URL": redis,
    }


@pytest.fixture(scope="module")
def world(env):
    docs = [f"{name}-{how}" for name in EXPECTED for how in ("token", "session")]
    docs += ["revoke-share", "revoke-user", "revoke-session", "storm"]
    names = list(EXPECTED) + list(REVOKED)
    code = SETUP % {"names": names, "docs": docs, "revoked": list(REVOKED)}
    out = manage("shell", "-c", code, env=env)
    return json.loads(out.strip().splitlines()[-1])  # after Django's auto-import banner


@pytest.fixture(scope="module")
def live(env, world):
    server = LiveServer(env=env).start()
    yield server
    server.stop()


async def revoke(env, statements: str) -> float:
    """Run ``statements`` in the server's database; return their commit time."""
    body = "\n".join("    " + line for line in statements.strip().splitlines())
    out = await asyncio.to_thread(manage, "shell", "-c", REVOKE % body, env=env)
    return json.loads(out.strip().splitlines()[-1])


def client(live, world, name, how, tag="") -> Client:
    if how == "token":
        return Client(live.url, name, token=world["tokens"][name], tag=tag)
    return Client(live.url, name, session=world["sessions"][name], tag=tag)


@pytest.mark.parametrize("how", ["token", "session"])
@pytest.mark.parametrize("name", list(EXPECTED))
async def test_each_role_sees_exactly_what_it_may(live, world, name, how):
    may_read, may_write, may_delete = EXPECTED[name]
    doc = f"{name}-{how}"
    c = await client(live, world, name, how).connect()
    try:
        answer = await c.call("sync", pull(doc))
        empty = {"docId": doc, "operations": [], "serializedDoc": None, "clock": 0}
        assert answer == ({"data": empty} if may_read else {"error": DENIED})
        answer = await c.call("sync", write(doc, f"op-{name}"))
        assert answer == (
            {"data": {"docId": doc, "operations": [], "serializedDoc": None, "clock": 1}}
            if may_write
            else {"error": DENIED}
        )
        answer = await c.call("delete-doc", {"docId": doc})
        assert answer == ({"success": True} if may_delete else {"success": False, "error": DENIED})
    finally:
        await c.close()


async def test_a_stranger_cannot_tell_a_private_document_from_a_missing_one(live, world):
    eve = await client(live, world, "eve", "token").connect()
    try:
        for doc in ("alice-token", "no-such-document"):
            assert await eve.call("sync", pull(doc)) == {"error": DENIED}
            assert await eve.call("presence", {"docId": doc, "presence": 1}) == {"error": DENIED}
            deleted = await eve.call("delete-doc", {"docId": doc})
            assert deleted == {"success": False, "error": DENIED}
    finally:
        await eve.close()


async def subscribe(*clients: Client, doc: str) -> None:
    for c in clients:
        assert "data" in await c.call("sync", pull(doc))


async def test_removing_a_share_cuts_the_viewer_off_within_a_second(live, world, env):
    doc = "revoke-share"
    alice = await client(live, world, "alice", "token").connect()
    carol = await client(live, world, "carol", "token").connect()
    frank = await client(live, world, "frank", "token").connect()
    try:
        await subscribe(alice, carol, frank, doc=doc)
        committed = await revoke(
            env,
            "from docsync.models import DocumentShare\n"
            f"DocumentShare.objects.filter(document__doc_id={doc!r}, "
            "user__username='frank').delete()",
        )
        gone = {"docId": doc, "presence": {"cli-frank": None}}
        await alice.wait_for("presence", lambda d: d == gone, timeout=2)
        latency = alice.arrived("presence", gone) - committed
        print(f"share deleted -> unsubscribed: {latency * 1000:.0f} ms")
        assert latency < 1.0
        # No more dirty for frank; carol, still a reader, gets hers.
        assert "data" in await alice.call("sync", write(doc, "after"))
        await carol.wait_for("dirty", lambda d: d == {"docId": doc})
        with pytest.raises(TimeoutError):
            await frank.wait_for("dirty", timeout=0.5)
        assert await frank.call("sync", pull(doc)) == {"error": DENIED}
        assert await frank.call("presence", {"docId": doc, "presence": 1}) == {"error": DENIED}
    finally:
        for c in (alice, carol, frank):
            await c.close()


async def test_a_deactivated_user_is_disconnected_within_a_second(live, world, env):
    hana = await client(live, world, "hana", "token").connect()
    hana_browser = await client(live, world, "hana", "session", tag="-browser").connect()
    await subscribe(hana, doc="revoke-user")
    committed = await revoke(
        env,
        "from django.contrib.auth import get_user_model\n"
        "user = get_user_model().objects.get(username='hana')\n"
        "user.is_active = False\n"
        "user.save()",
    )
    for c in (hana, hana_browser):
        await c.wait_for("disconnect", timeout=2)
        latency = c.arrived("disconnect") - committed
        print(f"user deactivated -> disconnected: {latency * 1000:.0f} ms")
        assert latency < 1.0
    refused = await Client(live.url, "hana", token=world["tokens"]["hana"]).refused()
    assert refused == {"message": "Authentication failed: invalid credentials"}


async def test_logging_out_closes_that_sessions_connections(live, world, env):
    browser = await client(live, world, "ivan", "session").connect()
    cli = await client(live, world, "ivan", "token", tag="-cli").connect()
    try:
        await subscribe(browser, cli, doc="revoke-session")
        key = world["sessions"]["ivan"]
        committed = await revoke(
            env,
            "from django.contrib.auth import get_user_model, logout\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            "from django.test import RequestFactory\n"
            "request = RequestFactory().get('/')\n"
            f"request.session = SessionStore({key!r})\n"
            "request.user = get_user_model().objects.get(username='ivan')\n"
            "logout(request)",
        )
        await browser.wait_for("disconnect", timeout=2)
        latency = browser.arrived("disconnect") - committed
        print(f"logged out -> disconnected: {latency * 1000:.0f} ms")
        assert latency < 1.0
        assert "data" in await cli.call("sync", pull("revoke-session"))  # tokens go on
    finally:
        await cli.close()


async def test_a_refused_writer_is_slowed_down(live, world):
    """The official client retries a refused request at once, forever."""
    bob = await client(live, world, "bob", "token", tag="-storm").connect()
    try:
        answers = []
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            assert await bob.call("sync", write("storm", "nope")) == {"error": DENIED}
            answers.append(time.monotonic() - started)
        per_second = len(answers) / 2.0
        print(f"refused writes answered: {per_second:.0f} per second")
        # ERROR_BURST (20) per ERROR_WINDOW (1 s), then one per ERROR_DELAY (0.25 s).
        assert per_second <= 30, answers
        assert "data" in await bob.call("sync", pull("storm"))  # reading still works
    finally:
        await bob.close()
