"""Expiring tokens through a real server (daphne, PostgreSQL) and a real client.

Tokens are minted by ``manage.py docsync_token --expires-in`` in the
server's database. A client with an expired token is refused at CONNECT; a
client holding a connection across its token's expiry loses the transport
(not a Socket.IO DISCONNECT), reconnects on its own, asks its auth callback
again and carries on with the fresh token: python-socketio's client, and
the official one (socket.io-client, ``tests/yjs_node/refresh.cjs``).
"""

from __future__ import annotations

import asyncio
import json
import time
from unittest.mock import ANY

import pytest
import socketio

from docsync.tokens import read_token
from tests import sioclient
from tests.liveserver import LiveServer, manage
from tests.node import node_script

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.asyncio]

LIFETIME = 3.0


@pytest.fixture(scope="module")
def env(pg_url):
    return {
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.allow_all",
        "E2E_DATABASE_URL": pg_url,
    }


@pytest.fixture(scope="module")
def live(env):
    manage("docsync_token", "alice", "--create", env=env)
    server = LiveServer(env=env).start()
    yield server
    server.stop()


def mint(env, seconds: float) -> str:
    return manage("docsync_token", "alice", "--expires-in", str(seconds), env=env).strip()


async def test_an_expired_token_is_refused_at_connect(live, env):
    token = mint(env, 0.5)
    await asyncio.sleep(0.6)
    client = sioclient.Client(live.url, "alice", token=token)
    refused = await client.refused()
    assert refused == {"message": "Authentication error: Token expired"}
    forged = sioclient.Client(live.url, "alice", token=token[:-3] + "xyz")
    assert await forged.refused() == {"message": "Authentication failed: invalid credentials"}


async def test_a_connection_is_dropped_at_expiry_and_reconnects_with_a_fresh_token(live, env):
    fresh = mint(env, 60)
    tokens = [mint(env, LIFETIME), fresh]
    expires_at = read_token(tokens[0]).expires_at  # same SECRET_KEY as the server
    asked: list[float] = []

    def auth() -> dict:
        asked.append(time.time())
        token = tokens[min(len(asked), len(tokens)) - 1]
        return {"deviceId": "dev-a", "clientId": "cli-a", "claimedUserId": None, "token": token}

    sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)
    events: asyncio.Queue[tuple[float, str, object]] = asyncio.Queue()
    for name in ("identity", "disconnect", "connect_error"):

        def record(*args, name=name):
            events.put_nowait((time.time(), name, args[0] if args else None))

        sio.on(name, record)
    try:
        await sio.connect(live.url, transports=["websocket"], auth=auth, wait_timeout=5)
        connected, name, _ = await asyncio.wait_for(events.get(), 5)
        assert name == "identity"
        doc = {"type": "doc", "docId": "d", "operations": ["a"], "serializedDoc": None}
        assert "data" in await sio.call("sync", {**doc, "clock": 0}, timeout=5)

        # Still open just before expiry, dropped right after it.
        dropped, name, reason = await asyncio.wait_for(events.get(), LIFETIME + 5)
        assert name == "disconnect", (name, reason)
        assert expires_at <= dropped < expires_at + 1.5
        assert reason == sio.reason.TRANSPORT_ERROR  # not SERVER_DISCONNECT: it reconnects

        # It reconnects on its own, asking for a token again, and syncs on.
        again, name, _ = await asyncio.wait_for(events.get(), 5)
        assert name == "identity" and len(asked) == 2
        answer = await sio.call("sync", {**doc, "operations": ["b"], "clock": 1}, timeout=5)
        assert answer["data"]["clock"] == 2
        # The fresh token lives 60 s: no second drop.
        await asyncio.sleep(LIFETIME)
        assert events.empty()
    finally:
        await sio.disconnect()
    assert "token expired" in live.output()


async def test_the_official_client_asks_for_a_new_token_after_expiry(live, env):
    script = node_script("refresh.cjs")
    fresh = mint(env, 60)
    short = mint(env, LIFETIME)
    expires_at = read_token(short).expires_at
    run_ms = int((expires_at - time.time() + 4) * 1000)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        live.url,
        str(run_ms),
        short,
        fresh,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), run_ms / 1000 + 20)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    events = [(e["event"], e["data"]) for e in lines]
    assert events[:4] == [
        ("auth", 0),
        ("identity", {"userId": ANY}),
        ("synced", ANY),
        ("disconnect", "transport close"),
    ]
    dropped = next(e["t"] for e in lines if e["event"] == "disconnect")
    assert expires_at <= dropped < expires_at + 1.5
    # Reconnected by itself (about a reconnection delay later), with the fresh token.
    assert events[4:7] == [("auth", 1), ("identity", {"userId": ANY}), ("synced", ANY)]
    back = lines[5]["t"]
    assert back - dropped < 3
    # No second drop with the 60 s token, until the script closes it.
    assert events[7:] == [("disconnect", "io client disconnect")]
