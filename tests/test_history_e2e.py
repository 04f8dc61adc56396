"""A restore from the admin reaches every connected client, on every process.

Two server processes (daphne) on one PostgreSQL database and one Redis
channel layer; a client on each. The admin (Django's test client in a
``manage.py shell`` process, as a superuser with a session and a CSRF token)
restores the document from its timeline; both clients are sent ``dirty``,
sync with their clock and get the restored snapshot, then keep editing.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests import sioclient
from tests.e2e_db import server_env
from tests.liveserver import LiveServer, manage
from tests.services import require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.asyncio]

DOC = "restored-doc"

# The admin's own page flow: the change page (with its timeline and a CSRF
# token), then the restore button's POST with that token.
ADMIN_RESTORE = """
import re
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from docsync.models import Document

root = get_user_model().objects.create_superuser("root")
doc = Document.objects.get(doc_id=%(doc)r)
client = Client(enforce_csrf_checks=True)
client.force_login(root)
page = client.get(reverse("admin:docsync_document_change", args=[doc.pk])).content.decode()
assert 'name="clock" value="%(clock)s"' in page, page
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
url = reverse("admin:docsync_document_restore", args=[doc.pk])
response = client.post(url, {"clock": "%(clock)s", "csrfmiddlewaretoken": token})
assert response.status_code == 302, response.status_code
doc.refresh_from_db()
print(doc.latest_clock)
"""


@pytest.fixture
def env(pg_url):
    return {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_REDIS_URL": require_redis(),
        "E2E_DOCSYNC": json.dumps({"SQUASH_THRESHOLD": 3}),
    }


@pytest.fixture
def servers(env):
    started = [LiveServer(env=env).start(), LiveServer(env=env).start()]
    yield started
    for server in started:
        server.stop()


async def test_an_admin_restore_reaches_clients_on_every_process(servers, env):
    alice = await sioclient.Client(servers[0].url, "alice").connect()
    bob = await sioclient.Client(servers[1].url, "bob").connect()
    try:
        clock = 0
        for n in range(1, 6):  # squashed along the way (threshold 3)
            clock = (await alice.sync(DOC, [f"a{n}"], clock=clock))["data"]["clock"]
        assert clock == 5
        answer = await bob.sync(DOC)
        bob_clock, bob_view = answer["data"]["clock"], answer["data"]["serializedDoc"]
        bob_view = (bob_view or []) + answer["data"]["operations"]
        assert bob_view == ["a1", "a2", "a3", "a4", "a5"]
        assert "dirty" not in alice.names() + bob.names()
        out = await asyncio.to_thread(
            manage, "shell", "-c", ADMIN_RESTORE % {"doc": DOC, "clock": 2}, env=env
        )
        assert out.strip().splitlines()[-1] == "6"
        await alice.wait_for("dirty", lambda data: data == {"docId": DOC})
        await bob.wait_for("dirty", lambda data: data == {"docId": DOC})
        for client, old in ((alice, clock), (bob, bob_clock)):
            answer = await client.sync(DOC, clock=old, snapshot=["stale"])
            assert answer["data"] == {
                "docId": DOC,
                "operations": [],
                "serializedDoc": ["a1", "a2"],
                "clock": 6,
            }
        assert (await bob.sync(DOC, ["b1"], ["a1", "a2"], clock=6))["data"]["clock"] == 7
        await alice.wait_for("dirty", lambda data: data == {"docId": DOC})
        answer = await alice.sync(DOC, snapshot=["a1", "a2"], clock=6)
        assert answer["data"]["operations"] == ["b1"]
    finally:
        await alice.close()
        await bob.close()
