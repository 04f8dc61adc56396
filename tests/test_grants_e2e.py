"""Writes allowed by a share or by OPEN_DOCUMENTS, on PostgresProvider (a real server).

After the first write, a connection's writes are not decided again
(``docsync.grants``): the provider checks, in the write's own transaction,
that the share (or the document's being shared with nobody) still holds.
So changes that send no signal (``QuerySet.update()``, bulk deletes and
creates) take effect at the very next write.
"""

from __future__ import annotations

import json

import pytest

from tests.liveserver import LiveServer, manage
from tests.test_permissions_e2e import DENIED, Client, pull, write

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.asyncio]

SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from docsync.models import Document, DocumentShare
names = ("alice", "carol", "gina", "eve", "vera")
users = {n: get_user_model().objects.create_user(n) for n in names}
team = Group.objects.create(name="team")
users["gina"].groups.add(team)
shared = Document.objects.create(doc_id="shared", doc_type="doc", owner=users["alice"])
DocumentShare.objects.create(document=shared, user=users["carol"], role="editor")
DocumentShare.objects.create(document=shared, group=team, role="editor")
Document.objects.create(doc_id="open", doc_type="doc", owner=users["alice"])
viewed = Document.objects.create(doc_id="viewed", doc_type="doc", owner=users["alice"])
DocumentShare.objects.create(document=viewed, user=users["vera"], role="viewer")
print(json.dumps({n: Token.objects.create(user=u).key for n, u in users.items()}))
"""


@pytest.fixture(scope="module")
def env(pg_url):
    return {
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
        "E2E_PROVIDER": "docsync.providers.postgres.PostgresProvider",
        "E2E_DATABASE_URL": pg_url,
        "E2E_DOCSYNC": json.dumps({"OPEN_DOCUMENTS": True}),
    }


@pytest.fixture(scope="module")
def tokens(env):
    return json.loads(manage("shell", "-c", SETUP, env=env).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def live(env, tokens):
    server = LiveServer(env=env).start()
    yield server
    server.stop()


def shell(env, code: str) -> None:
    manage("shell", "-c", code, env=env)


async def writes(c: Client, doc: str, name: str, count: int) -> list:
    return [(await c.call("sync", write(doc, f"{name}-{i}"))) for i in range(count)]


def ok(answer) -> bool:
    return "data" in answer


async def test_a_share_lowered_without_a_signal_refuses_the_next_write(live, env, tokens):
    carol = await Client(live.url, "carol", token=tokens["carol"]).connect()
    try:
        assert ok(await carol.call("sync", pull("shared")))  # her write grant comes with it
        assert all(ok(a) for a in await writes(carol, "shared", "carol", 3))
        shell(
            env,
            "from docsync.models import DocumentShare\n"
            "DocumentShare.objects.filter(user__username='carol').update(role='viewer')",
        )
        assert await carol.call("sync", write("shared", "late")) == {"error": DENIED}
        assert ok(await carol.call("sync", pull("shared")))  # a viewer still reads
    finally:
        await carol.close()


async def test_leaving_the_group_in_bulk_refuses_the_next_write(live, env, tokens):
    gina = await Client(live.url, "gina", token=tokens["gina"]).connect()
    try:
        assert all(ok(a) for a in await writes(gina, "shared", "gina", 3))
        shell(
            env,
            "from django.contrib.auth import get_user_model\n"
            "get_user_model().groups.through.objects.filter(user__username='gina').delete()",
        )
        assert await gina.call("sync", write("shared", "late")) == {"error": DENIED}
    finally:
        await gina.close()


async def test_an_open_document_shared_in_bulk_refuses_the_next_write(live, env, tokens):
    eve = await Client(live.url, "eve", token=tokens["eve"]).connect()
    try:
        assert all(ok(a) for a in await writes(eve, "open", "eve", 3))
        shell(
            env,
            "from django.contrib.auth import get_user_model\n"
            "from docsync.models import Document, DocumentShare\n"
            "DocumentShare.objects.bulk_create([DocumentShare(\n"
            "    document=Document.objects.get(doc_id='open'),\n"
            "    user=get_user_model().objects.get(username='carol'), role='viewer')])",
        )
        assert await eve.call("sync", write("open", "late")) == {"error": DENIED}
        assert await eve.call("sync", pull("open")) == {"error": DENIED}
        # Everything she wrote while allowed is there, once.
        alice = await Client(live.url, "alice", token=tokens["alice"]).connect()
        try:
            ops = (await alice.call("sync", pull("open")))["data"]["operations"]
            assert ops == [f"eve-{i}" for i in range(3)]
        finally:
            await alice.close()
    finally:
        await eve.close()


async def test_a_viewer_sending_her_document_reads_but_never_plants_a_snapshot(live, tokens):
    vera = await Client(live.url, "vera", token=tokens["vera"]).connect()
    alice = await Client(live.url, "alice", token=tokens["alice"]).connect()
    whole = {**pull("viewed"), "serializedDoc": ["vera's"]}
    try:
        assert ok(await vera.call("sync", pull("viewed")))  # subscribed, allowed to view
        # The document has no snapshot: hers would be stored, a write.
        assert await vera.call("sync", whole) == {"error": DENIED}
        first = {**write("viewed", "a1"), "serializedDoc": ["alice's"]}
        assert ok(await alice.call("sync", first))
        for _ in range(3):  # now it only reads, from the first decision on
            answer = (await vera.call("sync", {**whole, "clock": 1}))["data"]
            assert answer["clock"] == 1 and answer["operations"] == []
        back = (await vera.call("sync", pull("viewed")))["data"]
        assert back["serializedDoc"] == ["alice's"] and back["operations"] == ["a1"]
    finally:
        await vera.close()
        await alice.close()
