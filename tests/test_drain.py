"""Graceful drain on SIGTERM (issue 13, point 4), on real uvicorn and daphne processes.

A process wrapped in ``docsync.lifespan.GracefulDrain`` that gets SIGTERM
refuses new WebSockets, drops each transport (code 1012, no Socket.IO
DISCONNECT: the official client reconnects), spread over ``DRAIN_WINDOW``,
clears its clients' presence itself, and exits on its own. Rolling a
3-process deployment under continuous writers loses no acknowledged
operation and every writer comes back (``tests.rolling``; the numbers:
``benchmarks/bench_drain.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid

import pytest
import websockets

from tests.e2e_db import server_env
from tests.liveserver import LiveServer
from tests.rawws import RawLiveClient
from tests.rolling import APP, Cluster, rolling_restart
from tests.services import _skip_or_fail
from tests.sioclient import Client
from tests.test_multiprocess import RedisProcess
from tests.wsclient import auth

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres, pytest.mark.asyncio]

WINDOW = 2.0


@pytest.fixture(scope="module")
def redis_proc():
    if shutil.which("redis-server") is None:
        _skip_or_fail("redis-server is not installed")
    proc = RedisProcess().start()
    yield proc
    proc.stop()


def env_for(pg_url: str, redis_url: str, window: float = WINDOW) -> dict[str, str]:
    return {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_REDIS_URL": redis_url,
        "E2E_DOCSYNC": json.dumps({"DRAIN_WINDOW": window}),
    }


def doc_id() -> str:
    return "01k" + uuid.uuid4().hex[:23]


def sync(doc: str) -> dict:
    return {"type": "doc", "docId": doc, "operations": [], "serializedDoc": None, "clock": 0}


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_sigterm_drops_each_transport_without_disconnect(server, pg_url, redis_proc):
    env = env_for(pg_url, redis_proc.url, window=3.0)
    stopping = LiveServer(env=env, server=server, app=APP).start()
    staying = LiveServer(env=env, server=server, app=APP).start()
    doc = doc_id()
    observer = await Client(staying.url, "olga").connect()
    leaving = []
    try:
        await observer.sync(doc)
        for n in range(2):
            raw = RawLiveClient(stopping.ws_url)
            await raw.connect(auth(f"lea{n}"))
            assert "data" in await raw.call("sync", sync(doc))
            assert await raw.call("presence", {"docId": doc, "presence": n}) == {}
            leaving.append(raw)
        await observer.wait_for("presence", lambda d: d["presence"] == {"cli-lea1": 1})
        assert stopping.proc is not None
        stopping.proc.send_signal(15)  # SIGTERM
        first = await asyncio.wait_for(
            asyncio.wait(
                [asyncio.ensure_future(c.closed.wait()) for c in leaving],
                return_when=asyncio.FIRST_COMPLETED,
            ),
            10,
        )
        assert first
        # Draining: a new WebSocket is refused (the client tries another process).
        with pytest.raises(websockets.InvalidStatus) as refused:
            await RawLiveClient(stopping.ws_url).open()
        assert refused.value.response.status_code == 403
        for c in leaving:
            await asyncio.wait_for(c.closed.wait(), 10)
        # A dropped transport, never a Socket.IO DISCONNECT ("41").
        frames = [f for c in leaving for f in _frames(c)]
        assert "41" not in frames
        assert {c.close_code for c in leaving} == {1012 if server == "uvicorn" else 4012}
        # The stopping process cleared its clients' presence itself.
        for n in range(2):
            gone = {"docId": doc, "presence": {f"cli-lea{n}": None}}
            await observer.wait_for("presence", lambda d, gone=gone: d == gone, timeout=5)
        status = await asyncio.to_thread(stopping.proc.wait, 20)
        assert status in (0, -15)  # it exited by itself (uvicorn re-raises SIGTERM)
    finally:
        await observer.close()
        for c in leaving:
            await c.close()
        stopping.stop()
        staying.stop()
    out = stopping.output()
    assert "draining 2 connection(s) over 3 s" in out, out
    ended = re.findall(r"connection (\S+) ended \(server shutting down\)", out)
    assert len(set(ended)) == 2, out
    assert "Traceback" not in out + staying.output()


def _frames(client: RawLiveClient) -> list[str]:
    frames = []
    while not client.frames.empty():
        frame = client.frames.get_nowait()
        if isinstance(frame, str):
            frames.append(frame)
    return frames


async def test_rolling_restart_under_load_loses_no_acknowledged_operation(pg_url, redis_proc):
    cluster = Cluster(env_for(pg_url, redis_proc.url)).start()
    try:
        rolled = await rolling_restart(cluster, writers_n=9, docs_n=3, window=WINDOW)
    finally:
        cluster.stop()
    acked, lost = rolled.acked(), rolled.lost()
    print(
        f"\ndrain s {[round(s, 2) for s in rolled.drain_seconds]}, "
        f"{len(acked)} acked, {len(lost)} lost, reconnects {len(rolled.reconnect_seconds())}"
    )
    assert lost == set()
    assert rolled.duplicated() == 0
    assert None not in rolled.exit_status  # each process exited by itself
    # Every writer was dropped once by the process it was on, and came back.
    for w in rolled.writers:
        assert len(w.drops) >= 1, w.name
        assert len(w.reconnects) == len(w.drops), w.name
        assert w.echoed == [], f"{w.name} was sent its own operations back"
        assert not w.queue
    assert cluster.output(retired_only=True).count("docsync: drained in") == 3
    assert "Traceback" not in cluster.output()
