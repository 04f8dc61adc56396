"""Every end of a connection cleans up, on real uvicorn and daphne (issue 9, points 3 and 4).

A server process on PostgreSQL and a Redis of its own (channel layer and
``RedisState``), real clients: a python-socketio observer, and raw-socket
clients (``tests.rawsocket``) that vanish in the middle of an answer or stop
reading. After each, the others must see the client leave (presence ``null``,
``collaboration`` recomputed), nothing of it may stay in Redis, the ``dirty``
of everything it committed must still have gone out, and the server log must
hold no traceback.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid

import pytest
import redis

from tests.liveserver import LiveServer, manage
from tests.rawsocket import RawSocketClient
from tests.services import _skip_or_fail
from tests.sioclient import Client
from tests.test_multiprocess import RedisProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres, pytest.mark.asyncio]

SERVERS = ["uvicorn", "daphne"]


@pytest.fixture(scope="module")
def redis_proc():
    if shutil.which("redis-server") is None:
        _skip_or_fail("redis-server is not installed")
    proc = RedisProcess().start()
    yield proc
    proc.stop()


def start(server: str, pg_url: str, redis_url: str, **env: str) -> LiveServer:
    base = {
        "E2E_REDIS_URL": redis_url,
        "E2E_DATABASE_URL": pg_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
    }
    return LiveServer(env={**base, **env}, server=server).start()


def doc_id() -> str:
    return "01k" + uuid.uuid4().hex[:23]


def leftovers(redis_url: str) -> dict[str, int]:
    """What Redis still holds of connections: group memberships, members, presence."""
    r = redis.Redis.from_url(redis_url)
    try:
        return {
            "group memberships": sum(r.zcard(k) for k in r.scan_iter("asgi:group:*")),
            "members": sum(r.hlen(k) for k in r.scan_iter("docsync:m:*")),
            "presence": sum(r.hlen(k) for k in r.scan_iter("docsync:p:*")),
        }
    finally:
        r.close()


async def no_leftovers(redis_url: str, timeout: float = 5.0) -> dict[str, int]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = leftovers(redis_url)
        if not any(found.values()) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


def request(doc: str, operations=(), clock: int = 0, snapshot=None) -> dict:
    return {
        "type": "doc",
        "docId": doc,
        "operations": list(operations),
        "serializedDoc": snapshot,
        "clock": clock,
    }


def assert_clean_log(live: LiveServer) -> None:
    out = live.output()
    assert "Traceback" not in out, out
    assert "heartbeat failed" not in out, out


async def subscribe(raw: RawSocketClient, doc: str, presence=None) -> None:
    ack = await raw.recv_ack(await raw.emit("sync", request(doc)))
    assert "data" in ack, ack
    if presence is not None:
        ack = await raw.recv_ack(await raw.emit("presence", {"docId": doc, "presence": presence}))
        assert ack == {}, ack


@pytest.mark.parametrize("server", SERVERS)
async def test_a_client_that_vanishes_mid_answer_is_cleaned_up(server, pg_url, redis_proc):
    # Every write announced on its own, so the dirties can be counted.
    live = start(server, pg_url, redis_proc.url, E2E_DOCSYNC='{"DIRTY_INTERVAL": 0}')
    doc = doc_id()
    observer = await Client(live.url, "olga").connect()
    try:
        await observer.sync(doc, snapshot=[doc, "doc", {}])
        start_clock = (await observer.sync(doc))["data"]["clock"]
        ghost = RawSocketClient(live.port)
        await ghost.connect("gus")
        await subscribe(ghost, doc, presence={"cursor": 7})
        for _ in range(20):  # more memberships that must not stay behind
            await subscribe(ghost, doc_id())
        assert await observer.wait_for(
            "presence", lambda d: d["presence"] == {"cli-gus": {"cursor": 7}}
        )
        assert await observer.wait_for("collaboration", lambda d: d["hasCollaborators"])
        # Requests in flight, then a reset while the server is answering them.
        for n in range(30):
            await ghost.emit("sync", request(doc, [f"op-{n}"], clock=start_clock))
        await asyncio.sleep(0.05)
        ghost.vanish()

        gone = await observer.wait_for("presence", lambda d: d["presence"] == {"cli-gus": None})
        assert gone["docId"] == doc
        assert await observer.wait_for("collaboration", lambda d: not d["hasCollaborators"])
        # Every batch it committed was announced, the last one included.
        committed = (await observer.sync(doc, clock=start_clock))["data"]
        stored = len(committed["operations"])
        assert stored > 0
        await asyncio.sleep(0.3)
        dirty = [d for n, d in observer.events if n == "dirty"]
        assert len(dirty) == stored, (len(dirty), stored)
        # A newcomer sees no ghost.
        newcomer = await Client(live.url, "nina").connect()
        await newcomer.sync(doc)
        await asyncio.sleep(0.2)
        assert "presence" not in newcomer.names()
        await newcomer.close()
    finally:
        await observer.close()
    assert await no_leftovers(redis_proc.url) == {
        "group memberships": 0,
        "members": 0,
        "presence": 0,
    }
    live.stop()
    assert_clean_log(live)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_client_that_does_not_answer_pings_is_dropped(server, pg_url, redis_proc):
    live = start(server, pg_url, redis_proc.url, E2E_PING_INTERVAL="300", E2E_PING_TIMEOUT="300")
    doc = doc_id()
    observer = await Client(live.url, "olga").connect()
    try:
        await observer.sync(doc, snapshot=[doc, "doc", {}])
        mute = RawSocketClient(live.port)
        await mute.connect("mo")
        await subscribe(mute, doc, presence="here")
        started = asyncio.get_running_loop().time()
        # It keeps its socket open and says nothing more (no pong).
        await observer.wait_for("presence", lambda d: d["presence"] == {"cli-mo": None}, timeout=5)
        assert asyncio.get_running_loop().time() - started < 2.0
        assert await observer.wait_for("collaboration", lambda d: not d["hasCollaborators"])
        mute.close()
    finally:
        await observer.close()
    assert not any((await no_leftovers(redis_proc.url)).values())
    live.stop()
    assert_clean_log(live)


async def flood(writer: Client, doc: str, stop: asyncio.Event, size: int = 4000) -> int:
    """Presence updates as fast as the writer's acks come back; return how many."""
    sent = 0
    while not stop.is_set():
        ack = await writer.call(
            "presence", {"docId": doc, "presence": {"x": "p" * size, "n": sent}}
        )
        assert ack == {}, ack
        sent += 1
    return sent


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("bound", ["max unread", "ping timeout"])
async def test_a_client_that_stops_reading_is_dropped(server, bound, pg_url, redis_proc):
    if bound == "ping timeout":  # only the ping timeout can drop it
        env = {
            "E2E_PING_INTERVAL": "1000",
            "E2E_PING_TIMEOUT": "1000",
            "E2E_MAX_UNREAD": str(10**9),
        }
    else:  # only the bound on unread bytes can, this soon
        env = {
            "E2E_PING_INTERVAL": "20000",
            "E2E_PING_TIMEOUT": "20000",
            "E2E_MAX_UNREAD": "200000",
        }
    live = start(server, pg_url, redis_proc.url, **env)
    doc = doc_id()
    writer = await Client(live.url, "wanda").connect()
    try:
        await writer.sync(doc, snapshot=[doc, "doc", {}])
        reader = RawSocketClient(live.port, rcvbuf=2048)
        await reader.connect("rick")
        await subscribe(reader, doc, presence="reading")
        assert await writer.wait_for("collaboration", lambda d: d["hasCollaborators"])
        # From here on the reader reads nothing.
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(writer, doc, stop))
        started = asyncio.get_running_loop().time()
        # Its membership goes (the state backend is the truth: under this
        # flood the layer's per-channel capacity may drop relayed messages).
        r = redis.Redis.from_url(redis_proc.url)
        while r.hlen(f"docsync:m:{doc}") > 1:
            assert asyncio.get_running_loop().time() - started < 10, "never dropped"
            await asyncio.sleep(0.05)
        r.close()
        dropped_after = asyncio.get_running_loop().time() - started
        assert dropped_after < 5
        # The writer was served throughout, and still is.
        await asyncio.sleep(0.5)
        stop.set()
        sent = await asyncio.wait_for(flooding, 10)
        print(f"{server}, {bound}: dropped after {dropped_after:.2f} s, {sent} updates sent")
        assert (await writer.sync(doc, operations=["after"]))["data"]["clock"] >= 1
        # A newcomer sees no trace of it.
        newcomer = await Client(live.url, "nina").connect()
        await newcomer.sync(doc)
        await asyncio.sleep(0.3)
        shown = [d["presence"] for n, d in newcomer.events if n == "presence"]
        assert shown and all("cli-rick" not in p for p in shown), shown
        await newcomer.close()
        reader.close()
    finally:
        await writer.close()
    assert not any((await no_leftovers(redis_proc.url)).values())
    live.stop()
    out = live.output()
    print("\n".join(line for line in out.splitlines() if line.startswith("docsync:")))
    if bound == "max unread":
        assert "it stopped reading" in out, out
    assert_clean_log(live)


# -- revocation after a Redis restart (issue 9, point 9) ------------------------

WORLD = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from docsync.models import Document, DocumentShare
users = {n: get_user_model().objects.create_user(n + %(tag)r) for n in ("alice", "frank", "hana")}
doc = Document.objects.create(doc_id=%(doc)r, doc_type="doc", owner=users["alice"])
DocumentShare.objects.create(document=doc, user=users["frank"], role="viewer")
DocumentShare.objects.create(document=doc, user=users["hana"], role="viewer")
print(json.dumps({n: Token.objects.create(user=u).key for n, u in users.items()}))
"""


@pytest.mark.parametrize("server", SERVERS)
async def test_revocation_reaches_connections_opened_before_a_redis_restart(
    server, pg_url, redis_proc
):
    from tests.test_permissions_e2e import Client as TokenClient
    from tests.test_permissions_e2e import pull, revoke, write

    doc = f"restart-{server}"
    env = {
        "E2E_REDIS_URL": redis_proc.url,
        "E2E_DATABASE_URL": pg_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
    }
    tag = f"-{server}"  # the database is the module's
    out = await asyncio.to_thread(manage, "shell", "-c", WORLD % {"doc": doc, "tag": tag}, env=env)
    tokens = json.loads(out.strip().splitlines()[-1])
    live = LiveServer(env=env, server=server).start()
    alice, frank, hana = (TokenClient(live.url, n, token=tokens[n]) for n in tokens)
    try:
        for c in (alice, frank, hana):
            await c.connect()
            assert "data" in await c.call("sync", pull(doc))
        before = leftovers(redis_proc.url)["group memberships"]
        redis_proc.stop()
        redis_proc.start()  # empty: every group is gone
        deadline = asyncio.get_running_loop().time() + 10
        while leftovers(redis_proc.url)["group memberships"] < before:
            assert asyncio.get_running_loop().time() < deadline, "groups were not re-joined"
            await asyncio.sleep(0.1)
        # A share removed: frank's connection (per-user group) stops receiving.
        await revoke(
            env,
            "from docsync.models import DocumentShare\n"
            f"DocumentShare.objects.filter(document__doc_id={doc!r}, "
            f"user__username='frank{tag}').delete()",
        )
        gone = {"docId": doc, "presence": {"cli-frank": None}}
        await alice.wait_for("presence", lambda d: d == gone, timeout=3)
        assert "data" in await alice.call("sync", write(doc, "after the restart"))
        await hana.wait_for("dirty", lambda d: d == {"docId": doc})
        with pytest.raises(TimeoutError):
            await frank.wait_for("dirty", timeout=0.5)
        # A user deactivated: hana's connection is closed.
        await revoke(
            env,
            "from django.contrib.auth import get_user_model\n"
            f"user = get_user_model().objects.get(username='hana{tag}')\n"
            "user.is_active = False\n"
            "user.save()",
        )
        await hana.wait_for("disconnect", timeout=3)
    finally:
        for c in (alice, frank, hana):
            await c.close()
        live.stop()
    assert_clean_log(live)


# uvicorn only: daphne stops its event loop on SIGTERM before its applications
# have cleaned up (test_multiprocess: the dead-process reaper clears their
# members and presence later; their channel-layer memberships expire).
@pytest.mark.parametrize("server", ["uvicorn"])
async def test_a_server_that_stops_leaves_nothing_in_redis(server, pg_url, redis_proc):
    stopping = start(server, pg_url, redis_proc.url)
    staying = start(server, pg_url, redis_proc.url)
    doc = doc_id()
    base = leftovers(redis_proc.url)  # what earlier tests' daphne left

    def ours() -> dict[str, int]:
        return {k: v - base[k] for k, v in leftovers(redis_proc.url).items()}

    observer = await Client(staying.url, "olga").connect()
    leaving = [await Client(stopping.url, f"user{n}").connect() for n in range(3)]
    try:
        await observer.sync(doc, snapshot=[doc, "doc", {}])
        for n, c in enumerate(leaving):
            await c.sync(doc)
            await c.sync(doc_id())  # a document of its own too
            await c.call("presence", {"docId": doc, "presence": n})
        stopping.stop()  # SIGTERM: a graceful stop
        for n in range(3):
            gone = {"docId": doc, "presence": {f"cli-user{n}": None}}
            await observer.wait_for("presence", lambda d, gone=gone: d == gone, timeout=5)
        # Only the observer's memberships are left: its user group and its document.
        await asyncio.sleep(0.5)
        assert ours() == {"group memberships": 2, "members": 1, "presence": 0}
    finally:
        await observer.close()
        staying.stop()
    await asyncio.sleep(0.5)
    assert ours() == {"group memberships": 0, "members": 0, "presence": 0}
    assert_clean_log(stopping)
    assert_clean_log(staying)
