"""The metrics, checked from outside: a real server process under a real
socket load, scraped over HTTP, against what the load generator counted.

One process (daphne, ORM provider on PostgreSQL), then two uvicorn processes
sharing one ``PROMETHEUS_MULTIPROC_DIR`` (as several workers of one
deployment): either process's scrape gives the deployment's totals, and a
killed process's connections stop counting as open while its counts stay.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e_db import server_env
from tests.liveserver import LiveServer
from tests.services import require_redis
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

TOKEN = "metrics-token-for-the-tests"
WRITERS, PUSHES, OPS_PER_PUSH = 6, 12, 2
#: Ports of the servers these tests start (this helper's range).
PORTS = (27101, 27102, 27103)


def doc_id() -> str:
    return "01k" + uuid.uuid4().hex[:23]


async def scrape(server: LiveServer, token: str | None = TOKEN) -> dict[tuple, float]:
    """Every docsync sample of one scrape: (name, sorted labels) -> value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/metrics", headers=headers) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("docsync_"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class Load:
    """What the load generator did and saw, counted on the client side."""

    connects: int = 0
    refusals: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)  # (event, outcome)
    syncs_sent: int = 0
    operations_acked: int = 0
    clients: list[Client] = field(default_factory=list)

    async def connect(self, url: str, user: str) -> Client:
        client = await Client(url, user).connect()
        self.connects += 1
        self.clients.append(client)
        return client

    async def refuse(self, url: str, reason: str, **auth: object) -> None:
        await Client(url, auth=auth).refused()
        self.refusals[reason] += 1

    async def sync(self, client: Client, doc: str, ops: list, clock: int) -> int:
        self.syncs_sent += 1
        res = await client.sync(doc, operations=ops, clock=clock)
        assert "data" in res, res
        self.requests["sync", "ok"] += 1
        self.operations_acked += len(ops)
        return res["data"]["clock"]

    async def refused_request(self, client: Client, event: str, arg: object, label: str) -> None:
        res = await client.call(event, arg)
        self.requests[label, res["error"]["type"]] += 1

    def received(self, name: str) -> int:
        return sum(c.names().count(name) for c in self.clients)


async def writer(load: Load, client: Client, doc: str) -> None:
    clock = await load.sync(client, doc, [], 0)
    for i in range(PUSHES):
        ops = [[client.client_id, i, k] for k in range(OPS_PER_PUSH)]
        clock = await load.sync(client, doc, ops, clock)
    res = await client.call("presence", {"docId": doc, "presence": {"at": clock}})
    assert res == {}
    load.requests["presence", "ok"] += 1


async def errors(load: Load, client: Client) -> None:
    """One refused request of each kind (different ones: no back-off)."""
    bad = {"type": "doc", "docId": 7, "operations": [], "serializedDoc": None, "clock": 0}
    await load.refused_request(client, "sync", bad, "sync")
    await load.refused_request(client, "bogus", {}, "unknown")
    await load.refused_request(client, "presence", {"docId": doc_id(), "presence": 1}, "presence")


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


def check_counts(samples: dict[tuple, float], load: Load, open_now: int) -> None:
    """The scrape says exactly what the load generator counted."""
    assert value(samples, "docsync_connects_total") == load.connects
    assert value(samples, "docsync_connections_open") == open_now
    for reason, n in load.refusals.items():
        assert value(samples, "docsync_connect_refusals_total", reason=reason) == n, reason
    assert sum(
        v for (name, _), v in samples.items() if name == "docsync_connect_refusals_total"
    ) == sum(load.refusals.values())
    for (event, outcome), n in load.requests.items():
        got = value(samples, "docsync_requests_total", event=event, outcome=outcome)
        assert got == n, (event, outcome)
    assert sum(v for (name, _), v in samples.items() if name == "docsync_requests_total") == sum(
        load.requests.values()
    )
    assert value(samples, "docsync_sync_duration_seconds_count") == load.requests["sync", "ok"]
    assert value(samples, "docsync_operations_stored_total") == load.operations_acked
    assert value(samples, "docsync_messages_sent_total", type="dirty") == load.received("dirty")
    assert value(samples, "docsync_messages_sent_total", type="presence") == load.received(
        "presence"
    )
    for name in ("docsync_database_errors_total", "docsync_channel_layer_errors_total"):
        assert not any(v for (n, _), v in samples.items() if n == name), name
    assert value(samples, "docsync_squash_failures_total") == 0


async def run_load(load: Load, urls: list[str], during=None) -> None:
    """Writers (each with a reader of its document, on the next URL), their
    errors, and ``during()`` called while they write."""
    pairs = []
    for n in range(WRITERS):
        doc = doc_id()
        w = await load.connect(urls[n % len(urls)], f"w{n}")
        r = await load.connect(urls[(n + 1) % len(urls)], f"r{n}")
        await load.sync(r, doc, [], 0)  # subscribed: hears each push as a dirty
        pairs.append((w, r, doc))
    writing = asyncio.gather(*(writer(load, w, doc) for w, _, doc in pairs))
    if during is not None:
        await during()
    await writing
    for w, _, _ in pairs:
        await errors(load, w)
    # Every push reached its reader as one dirty, every presence as one presence.
    for _, r, _ in pairs:
        await r.wait_for("presence")
        r.events.append(("presence", None))  # counted, not consumed
    await wait_until(lambda: _true(load.received("dirty") == WRITERS * PUSHES))


async def _true(condition: bool) -> bool:
    return condition


async def test_scrape_under_load_matches_the_load_generator(pg_url):
    env = {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_DOCSYNC": json.dumps(
            {"METRICS_TOKEN": TOKEN, "CONNECT_FAILURE_BURST": 3, "CONNECT_FAILURE_DELAY": 0.1}
        ),
    }
    server = LiveServer(env=env, port=PORTS[0]).start()
    load = Load()
    try:
        assert (await scrape(server)).get(("docsync_connects_total", ())) == 0

        async def scrape_while_writing() -> None:
            # Under load: counts only grow, and never pass what was sent.
            last = 0.0
            while load.syncs_sent < WRITERS * (PUSHES + 2):
                samples = await scrape(server)
                ok = value(samples, "docsync_requests_total", event="sync", outcome="ok")
                assert last <= ok <= load.syncs_sent
                assert value(samples, "docsync_connections_open") == 2 * WRITERS
                last = ok
                await asyncio.sleep(0.02)

        await run_load(load, [server.url], scrape_while_writing)
        # Refusals last: past CONNECT_FAILURE_BURST (3) from one address, each
        # further CONNECT waits its turn (a limiter's slow-down).
        for _ in range(3):
            await load.refuse(server.url, "invalid_credentials", deviceId="d", clientId="c")
        await load.refuse(server.url, "invalid_handshake", clientId="c", token="valid-x")
        await load.refuse(
            server.url,
            "claimed_user_mismatch",
            deviceId="d",
            clientId="c",
            token="valid-x",
            claimedUserId="y",
        )
        samples = await scrape(server)
        check_counts(samples, load, open_now=2 * WRITERS)
        assert value(samples, "docsync_slowdowns_total", limiter="connect_failure") == 2
        # 13 batches per document at threshold 10: at least one squash each.
        assert value(samples, "docsync_squash_duration_seconds_count") >= WRITERS
        for client in load.clients:
            await client.close()

        async def closed() -> bool:
            return value(await scrape(server), "docsync_connections_open") == 0

        await wait_until(closed)
    finally:
        server.stop()


async def test_the_view_refuses_a_scrape_without_the_token(pg_url):
    env = {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_DOCSYNC": json.dumps({"METRICS_TOKEN": TOKEN}),
    }
    server = LiveServer(env=env, port=PORTS[0]).start()
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                async with session.get(f"{server.url}/metrics", headers=headers) as response:
                    assert response.status == 403
                    assert "docsync_" not in await response.text()
    finally:
        server.stop()


@pytest.mark.redis
async def test_two_processes_count_together(pg_url, tmp_path):
    env = {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_REDIS_URL": require_redis(),
        "E2E_DOCSYNC": json.dumps({"METRICS_TOKEN": TOKEN}),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    first, second = (LiveServer(env=env, server="uvicorn", port=port).start() for port in PORTS[1:])
    load = Load()
    try:
        # Writers and their readers on different processes (fan-out through Redis).
        await run_load(load, [first.url, second.url])
        on_second = sum(1 for c in load.clients if c.url == second.url)
        a, b = await scrape(first), await scrape(second)
        assert a == b  # either process answers with the deployment's totals
        check_counts(a, load, open_now=len(load.clients))
        assert {p.stem.rsplit("_", 1)[1] for p in tmp_path.glob("counter_*.db")} == {
            str(first.proc.pid),
            str(second.proc.pid),
        }
        second.kill()  # SIGKILL: its connections end without a word
        samples = await scrape(first)
        assert value(samples, "docsync_connections_open") == len(load.clients) - on_second
        assert value(samples, "docsync_connects_total") == load.connects
        assert value(samples, "docsync_operations_stored_total") == load.operations_acked
    finally:
        for client in load.clients:
            if client.sio.connected:
                await client.close()
        first.stop()
        second.kill()
