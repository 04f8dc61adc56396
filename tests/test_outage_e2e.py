"""A database outage reads as an outage (issue 9, point 7), on real servers.

A PostgreSQL cluster of the test's own (``tests.pgcluster``) under a live
uvicorn or daphne with the ORM provider, the default token authentication
and the default authorize. The cluster is stopped for 5 s while a client
keeps syncing and a new client tries to connect, then started again:

- every answer during the outage is the retryable ``DatabaseError`` whose
  message says storage is unavailable; nothing of the driver's text reaches
  a client, CONNECT included (the transport closes with 1013 "try again
  later", so clients reconnect rather than give up);
- the server logs one line when the outage starts and one when it ends, and
  no traceback;
- the first request after the database is back succeeds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.liveserver import LiveServer, manage
from tests.pgcluster import PgCluster, pg_bin
from tests.rawsocket import ClosedByServer, RawSocketClient
from tests.services import _skip_or_fail
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.asyncio]

UNAVAILABLE = {"type": "DatabaseError", "message": "Storage is unavailable; try again shortly."}
TOKENS = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
users = [get_user_model().objects.create_user(n) for n in ("alice", "bob")]
print(json.dumps({u.username: Token.objects.create(user=u).key for u in users}))
"""


@pytest.fixture(scope="module")
def cluster():
    if pg_bin() is None:
        _skip_or_fail("PostgreSQL server binaries (initdb, postgres) are not installed")
    pg = PgCluster().start()
    yield pg
    pg.destroy()


@pytest.fixture(scope="module")
def world(cluster):
    url = cluster.create_database(f"docsync_outage_{uuid.uuid4().hex[:8]}")
    env = {
        "E2E_DATABASE_URL": url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
    }
    manage("migrate", "-v", "0", env=env)
    tokens = json.loads(manage("shell", "-c", TOKENS, env=env).strip().splitlines()[-1])
    return env, tokens


def request(doc: str, operations=(), clock: int = 0) -> dict:
    return {
        "type": "doc",
        "docId": doc,
        "operations": list(operations),
        "serializedDoc": None,
        "clock": clock,
    }


async def refused_connect(port: int, token: str) -> tuple[int, str]:
    """CONNECT with a token on a raw socket; return the close code and reason."""
    raw = RawSocketClient(port)
    await raw.open()
    auth = {"deviceId": "dev-bob", "clientId": "cli-bob", "token": token}
    await raw.send_text("40" + json.dumps(auth))
    try:
        frame = await raw.recv_text()
    except ClosedByServer as exc:
        return exc.code, exc.reason
    finally:
        raw.close()
    raise AssertionError(f"CONNECT was answered during the outage: {frame!r}")


@pytest.mark.parametrize(
    "server, provider",
    [
        ("uvicorn", "docsync.providers.orm.ORMProvider"),
        ("daphne", "docsync.providers.orm.ORMProvider"),
        ("uvicorn", "docsync.providers.postgres.PostgresProvider"),
    ],
    ids=["uvicorn", "daphne", "uvicorn-postgres-provider"],
)
async def test_a_stopped_database_is_answered_as_an_outage_and_recovers(
    server, provider, cluster, world
):
    env, tokens = world
    live = LiveServer(env={**env, "E2E_PROVIDER": provider}, server=server).start()
    doc = "01k" + uuid.uuid4().hex[:23]
    alice = Client(live.url, token=tokens["alice"], device="dev-alice", client="cli-alice")
    await alice.connect()
    try:
        clock = (await alice.sync(doc, operations=["before"]))["data"]["clock"]
        cluster.stop()
        stopped = time.monotonic()
        answers = []
        while time.monotonic() - stopped < 5:
            answers.append(await alice.call("sync", request(doc, ["during"], clock)))
            await asyncio.sleep(0.02)
        code, reason = await refused_connect(live.port, tokens["bob"])
        print(
            f"{server}: {len(answers)} answers during the outage; CONNECT closed {code} {reason!r}"
        )
        assert answers and all(a == {"error": UNAVAILABLE} for a in answers), answers[:3]
        if server == "uvicorn":
            assert (code, reason) == (1013, UNAVAILABLE["message"])
        else:  # daphne sends no close reason, and 1013 as its 4xxx twin
            assert (code, reason) == (4013, "")

        cluster.start()
        # The first request after the database is back succeeds.
        res = await alice.call("sync", request(doc, ["after"], clock))
        assert "data" in res and res["data"]["clock"] == clock + 1, res
        bob = Client(live.url, token=tokens["bob"], device="dev-bob", client="cli-bob")
        await bob.connect()
        assert "data" in await bob.sync("01k" + uuid.uuid4().hex[:23], operations=["bob"])
        await bob.close()
        # Nothing was stored twice or lost.
        assert (await alice.sync(doc))["data"]["operations"] == ["before", "after"]
    finally:
        await alice.close()
        live.stop()
    log = live.output()
    assert "Traceback" not in log, log
    lines = log.splitlines()  # (daphne repeats each record with a timestamp)
    assert sum(line.startswith("docsync: storage is unavailable") for line in lines) == 1, log
    assert sum(line.startswith("docsync: storage is back") for line in lines) == 1, log
