"""Several real daphne processes on Redis and PostgreSQL, as in production.

Each test module run starts its own redis-server on a free port (so that it
can be killed and restarted without disturbing anything else) and uses a
dedicated PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import pytest

from tests.liveserver import LiveServer, free_port, wait_for_port
from tests.services import _skip_or_fail
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]

DEAD_PROCESS_BOUND = 10.0  # seconds: RedisState ttl (4 s) + heartbeat (1 s), with margin


class RedisProcess:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def redis_proc():
    if shutil.which("redis-server") is None:
        _skip_or_fail("Redis: redis-server is not installed")
    redis = RedisProcess().start()
    yield redis
    redis.stop()


@pytest.fixture
def cluster(redis_proc, pg_url):
    env = {
        "E2E_REDIS_URL": redis_proc.url,
        "E2E_DATABASE_URL": pg_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
    }
    # uvicorn, as the README recommends for production (graceful shutdown
    # lets connections clean up; daphne, the development server, does not).
    servers = [LiveServer(env=env, server="uvicorn").start() for _ in range(3)]
    yield servers
    for server in servers:
        server.kill()


def doc_id() -> str:
    return "01k" + uuid.uuid4().hex[:23]


async def test_fan_out_across_processes(cluster):
    doc = doc_id()
    alice = await Client(cluster[0].url, "alice").connect()
    bob = await Client(cluster[1].url, "bob").connect()
    carol = await Client(cluster[2].url, "carol").connect()
    try:
        await alice.sync(doc, snapshot=[doc, "doc", {}])
        assert await alice.wait_for("collaboration") == {"docId": doc, "hasCollaborators": False}
        await bob.sync(doc)
        assert await alice.wait_for("collaboration", lambda d: d["hasCollaborators"])
        assert await bob.wait_for("collaboration", lambda d: d["hasCollaborators"])
        await alice.call("presence", {"docId": doc, "presence": {"cursor": 1}})
        assert await bob.wait_for("presence") == {
            "docId": doc,
            "presence": {"cli-alice": {"cursor": 1}},
        }
        res = await carol.sync(doc)
        # carol, on a third process, gets the presence map on subscribe
        assert await carol.wait_for("presence") == {
            "docId": doc,
            "presence": {"cli-alice": {"cursor": 1}},
        }
        assert res["data"]["serializedDoc"] == [doc, "doc", {}]
        res = await bob.sync(doc, operations=[["b1"]], clock=0)
        assert res["data"]["clock"] == 1
        assert await alice.wait_for("dirty") == {"docId": doc}
        assert await carol.wait_for("dirty") == {"docId": doc}
        res = await carol.sync(doc, snapshot=[doc, "doc", {}], clock=0)
        assert res["data"]["operations"] == [["b1"]]
    finally:
        for c in (alice, bob, carol):
            await c.close()


async def test_killed_process_is_cleared(cluster):
    doc = doc_id()
    alice = await Client(cluster[0].url, "alice").connect()
    dave = await Client(cluster[2].url, "dave").connect()
    try:
        await alice.sync(doc, snapshot=[doc, "doc", {}])
        await dave.sync(doc)
        await dave.call("presence", {"docId": doc, "presence": "here"})
        assert await alice.wait_for("presence", lambda d: d["presence"] == {"cli-dave": "here"})
        assert await alice.wait_for("collaboration", lambda d: d["hasCollaborators"])
        cluster[2].kill()  # SIGKILL: no goodbye, no clean-up
        gone = await alice.wait_for(
            "presence", lambda d: d["presence"] == {"cli-dave": None}, timeout=DEAD_PROCESS_BOUND
        )
        assert gone["docId"] == doc
        collab = await alice.wait_for("collaboration", timeout=DEAD_PROCESS_BOUND)
        assert collab == {"docId": doc, "hasCollaborators": False}
        # a new subscriber sees no ghost
        erin = await Client(cluster[1].url, "erin").connect()
        await erin.sync(doc)
        assert "presence" not in erin.names()
        await erin.close()
    finally:
        await alice.close()


async def test_redis_restart_keeps_syncing_and_recovers_fan_out(cluster, redis_proc):
    doc = doc_id()
    alice = await Client(cluster[0].url, "alice").connect()
    bob = await Client(cluster[1].url, "bob").connect()
    try:
        await alice.sync(doc, snapshot=[doc, "doc", {}])
        await bob.sync(doc)
        redis_proc.stop()
        # Acks need only the database.
        res = await bob.sync(doc, operations=[["during-outage"]], clock=0)
        assert res["data"]["clock"] == 1
        res = await alice.sync(doc, snapshot=[doc, "doc", {}], clock=0)
        assert res["data"]["operations"] == [["during-outage"]]
        redis_proc.start()  # a new, empty Redis on the same port
        # Fan-out recovers once each process has restored its groups.
        clock = 1
        for _ in range(40):
            alice.events.clear()
            res = await bob.sync(doc, operations=[["after", clock]], clock=clock)
            clock = res["data"]["clock"]
            try:
                await alice.wait_for("dirty", timeout=0.5)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("fan-out did not recover after Redis restarted")
        assert "Redis" in cluster[0].output() or "channel layer" in cluster[0].output()
    finally:
        await alice.close()
        await bob.close()
    await asyncio.sleep(0)


async def test_graceful_stop_closes_only_its_connections(cluster):
    doc = doc_id()
    alice = await Client(cluster[0].url, "alice").connect()
    dave = await Client(cluster[1].url, "dave").connect()
    disconnected = asyncio.Event()
    dave.sio.on("disconnect", lambda *args: disconnected.set())
    try:
        await alice.sync(doc, snapshot=[doc, "doc", {}])
        await dave.sync(doc)
        await dave.call("presence", {"docId": doc, "presence": "here"})
        assert await alice.wait_for("presence", lambda d: d["presence"] == {"cli-dave": "here"})
        started = asyncio.get_running_loop().time()
        cluster[1].stop()  # SIGTERM: a graceful stop
        # Cleared by the stopping process itself, faster than the dead-process bound.
        await alice.wait_for("presence", lambda d: d["presence"] == {"cli-dave": None}, timeout=3)
        assert asyncio.get_running_loop().time() - started < 3
        await asyncio.wait_for(disconnected.wait(), 3)
        # alice's process is untouched
        res = await alice.sync(doc, operations=[["still here"]], snapshot=[doc, "doc", {}])
        assert res["data"]["clock"] == 1
    finally:
        await alice.close()
