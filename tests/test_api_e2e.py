"""Server-side edits while socket clients are connected: daphne, PostgreSQL, Redis.

``manage.py shell`` (another process, as a Celery worker or an admin would
be) applies operations with ``docsync.api`` inside ``transaction.atomic()``
and holds the transaction open until the test lets it commit: before that
no client hears ``dirty`` or reads the operations; after it every client
gets ``dirty`` through the Redis channel layer, pulls the server's batch like
another client's, and all of them converge on the state the API reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests import sioclient
from tests.e2e_db import server_env
from tests.liveserver import ROOT, LiveServer, manage
from tests.services import require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.asyncio]

DOC = "server-edits"

SETUP = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
users = {n: get_user_model().objects.create_user(n) for n in ("alice", "bob", "eve")}
out = {n: Token.objects.create(user=u).key for n, u in users.items()}
print(json.dumps({**out, "bob_pk": users["bob"].pk}))
"""

# Applies one batch inside atomic() and waits for a line on stdin before committing.
EDIT = """
import json, sys
from django.contrib.auth import get_user_model
from django.db import transaction
from docsync import api
alice = get_user_model().objects.get(username="alice")
with transaction.atomic():
    applied = api.apply_operations(%(doc)r, %(ops)r, user=alice)
    print(json.dumps({"clock": applied.clock}), flush=True)
    sys.stdin.readline()
state = api.get_state(%(doc)r, user=alice)
who = api.connected(%(doc)r, user=alice)
print(json.dumps({"state": state.state, "clock": state.clock,
                  "clients": sorted(m.client_id for m in who.members)}), flush=True)
"""

SHARE = """
from docsync.models import Document, DocumentShare
from django.contrib.auth import get_user_model
DocumentShare.objects.create(
    document=Document.objects.get(doc_id=%(doc)r),
    user=get_user_model().objects.get(username="bob"), role="editor")
"""


@pytest.fixture(scope="module")
def env(pg_url):
    return {
        **server_env(pg_url, "docsync.providers.postgres.PostgresProvider"),
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
        "E2E_REDIS_URL": require_redis(),
    }


@pytest.fixture(scope="module")
def tokens(env):
    return json.loads(manage("shell", "-c", SETUP, env=env).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def live(env, tokens):
    server = LiveServer(env=env).start()
    yield server
    server.stop()


class Shell:
    """``manage.py shell -c EDIT`` as a process whose commit the test releases."""

    def __init__(self, env: dict[str, str], code: str) -> None:
        full = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.e2e_settings", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "shell", "-c", code],
            cwd=ROOT,
            env=full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def line(self) -> dict:
        while True:
            text = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
            if not text:
                raise AssertionError(f"the shell ended: {self.proc.stderr.read()}")
            if text.startswith("{"):
                return json.loads(text)

    def commit(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


async def test_a_server_edit_inside_atomic_reaches_every_client_only_after_commit(
    live, env, tokens
):
    def client(name, tag):
        auth = {"deviceId": f"dev-{name}{tag}", "clientId": f"cli-{name}{tag}"}
        auth.update(claimedUserId=None, token=tokens[name])
        return sioclient.Client(live.url, auth=auth)

    alice = await client("alice", "1").connect()
    created = await alice.sync(DOC, ["a1"])
    assert created["data"]["clock"] == 1
    await asyncio.to_thread(manage, "shell", "-c", SHARE % {"doc": DOC}, env=env)
    others = [await client("alice", "2").connect(), await client("bob", "").connect()]
    clients = [alice, *others]
    clocks = {}
    for c in others:
        answer = (await c.sync(DOC))["data"]
        assert answer["operations"] == ["a1"]
        clocks[c] = answer["clock"]
    clocks[alice] = 1

    shell = Shell(env, EDIT % {"doc": DOC, "ops": ["server-1", "server-2"]})
    try:
        assert (await shell.line()) == {"clock": 2}
        # The batch is stored in the open transaction: nobody sees it yet.
        for c in clients:
            answer = (await c.sync(DOC, clock=clocks[c]))["data"]
            assert (answer["operations"], answer["clock"]) == ([], 1)
        assert not any("dirty" in c.names() for c in clients)

        shell.commit()
        for c in clients:
            assert await c.wait_for("dirty", lambda d: d == {"docId": DOC}) == {"docId": DOC}
            answer = (await c.sync(DOC, clock=clocks[c]))["data"]
            # Exactly like another client's operations.
            assert (answer["operations"], answer["clock"]) == (["server-1", "server-2"], 2)
        final = await shell.line()
    finally:
        shell.close()
    assert final["state"] == ["a1", "server-1", "server-2"]
    assert final["clock"] == 2
    assert final["clients"] == ["cli-alice1", "cli-alice2", "cli-bob"]
    for c in clients:  # a fresh full sync: every client holds the same document
        answer = (await c.sync(DOC))["data"]
        assert answer["operations"] == final["state"]
        await c.close()


REST_DOC = "rest-edits"


async def test_rest_writes_reach_sockets_and_removing_a_share_cuts_one_off(live, env, tokens):
    import aiohttp

    def client(name):
        auth = {"deviceId": f"dev-{name}-rest", "clientId": f"cli-{name}-rest"}
        auth.update(claimedUserId=None, token=tokens[name])
        return sioclient.Client(live.url, auth=auth)

    base = f"{live.url}/api/docsync/documents"
    async with aiohttp.ClientSession(headers={"Authorization": f"Token {tokens['alice']}"}) as http:
        body = {"id": REST_DOC, "type": "doc", "snapshot": [], "operations": ["a1"]}
        async with http.post(f"{base}/", json=body) as answer:
            assert answer.status == 201
        async with http.post(
            f"{base}/{REST_DOC}/shares/", json={"user": tokens["bob_pk"]}
        ) as answer:
            share = await answer.json()
            assert (answer.status, share["role"]) == (201, "viewer")
        alice, bob = await client("alice").connect(), await client("bob").connect()
        for c in (alice, bob):
            assert (await c.sync(REST_DOC))["data"]["operations"] == ["a1"]
        async with http.get(f"{base}/{REST_DOC}/presence/") as answer:
            members = (await answer.json())["members"]
        assert sorted(m["client_id"] for m in members) == ["cli-alice-rest", "cli-bob-rest"]

        async with http.post(
            f"{base}/{REST_DOC}/operations/", json={"operations": ["r"]}
        ) as answer:
            assert (answer.status, (await answer.json())["clock"]) == (201, 2)
        for c in (alice, bob):
            await c.wait_for("dirty", lambda d: d == {"docId": REST_DOC})
            answer = (await c.sync(REST_DOC, clock=1))["data"]
            # No local snapshot sent: the server's, and every batch after it.
            assert (answer["serializedDoc"], answer["operations"]) == ([], ["a1", "r"])

        async with http.delete(f"{base}/{REST_DOC}/shares/{share['id']}/") as answer:
            assert answer.status == 204
        # Revoked through the model signals and the Redis channel layer: bob leaves.
        gone = {"docId": REST_DOC, "presence": {"cli-bob-rest": None}}
        await alice.wait_for("presence", lambda d: d == gone)
        assert (await bob.sync(REST_DOC))["error"]["type"] == "AuthorizationError"
        async with http.post(
            f"{base}/{REST_DOC}/operations/", json={"operations": ["s"]}
        ) as answer:
            assert answer.status == 201
        await alice.wait_for("dirty", lambda d: d == {"docId": REST_DOC})
        assert "dirty" not in bob.names()
    await alice.close()
    await bob.close()
