"""Abuse costs the abuser (docsync.throttle): failed logins per client address,
refusals per user, identical refusals escalating, and the per-connection and
per-user limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.test import override_settings

from docsync.throttle import Backoff, KeyedThrottle
from tests.wsclient import RawClient, auth, dumps, event

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

DOC, DOC2, DOC3 = (f"01k0000000000000000000000{n}" for n in (1, 2, 3))
INVALID = '44{"message":"Authentication failed: invalid credentials"}'


def client_from(app, address: str) -> RawClient:
    c = RawClient(app)
    c.comm.scope["client"] = (address, 40000)
    return c


def bad_auth() -> str:
    return "40" + dumps({**auth("mallory"), "token": "guess"})


def pull(doc: str) -> dict:
    return {"type": "doc", "docId": doc, "operations": [], "serializedDoc": None, "clock": 0}


async def ask(c: RawClient, name: str, data, timeout: float = 3):
    """Send an event; return its ack's response (events before it are skipped)."""
    ack_id = await c.emit(name, data)
    return await answer(c, ack_id, timeout)


async def answer(c: RawClient, ack_id: int, timeout: float = 3):
    while True:
        prefix, body = await c.recv_json(timeout)
        if prefix == f"43{ack_id}":
            return body[0]


async def timed(coro) -> float:
    started = time.monotonic()
    await coro
    return time.monotonic() - started


# -- failed logins, per client address ------------------------------------------------


@override_settings(
    DOCSYNC={"CONNECT_FAILURE_BURST": 3, "CONNECT_FAILURE_WINDOW": 60, "CONNECT_FAILURE_DELAY": 0.2}
)
async def test_bad_credentials_are_slowed_down_per_address(app):
    guesser = client_from(app, "10.0.0.1")
    await guesser.open()
    times = []
    for _ in range(6):  # guessing on one socket
        started = time.monotonic()
        await guesser.send(bad_auth())
        assert await guesser.recv(timeout=3) == INVALID
        times.append(time.monotonic() - started)
    assert max(times[:3]) < 0.15, times  # the burst is answered at once
    assert min(times[3:]) >= 0.19, times  # then one every 0.2 s

    # More sockets from that address do not guess faster: one at a time.
    others = [client_from(app, "10.0.0.1") for _ in range(4)]
    for other in others:
        await other.open()

    async def guess(c: RawClient) -> None:
        await c.send(bad_auth())
        assert await c.recv(timeout=5) == INVALID

    assert await timed(asyncio.gather(*(guess(c) for c in others))) >= 0.75

    # Another address is not slowed down; that one is, for every credential.
    elsewhere = client_from(app, "10.0.0.2")
    assert await timed(elsewhere.connect("alice")) < 0.15
    assert await timed(guesser.connect_on_open("bob")) >= 0.19
    for c in (guesser, elsewhere, *others):
        await c.close()


# -- refusals, per user over all its connections -------------------------------------


@override_settings(DOCSYNC={"ERROR_BURST": 5, "ERROR_DELAY": 0.05, "REFUSAL_BACKOFF": 0})
async def test_refusals_are_slowed_down_per_user_not_only_per_connection(app):
    tabs = [RawClient(app) for _ in range(5)]
    for n, tab in enumerate(tabs):
        await tab.connect("bob", client=f"tab-{n}")

    async def flood(tab: RawClient) -> None:
        for ack_id in range(6):
            await tab.send(event("nope", {}, ack_id))
        for _ in range(6):
            prefix, body = await tab.recv_json(timeout=5)
            assert body[0]["error"]["message"] == "Unknown event: nope"

    # 30 refusals of one user: 5 at once, then one per 0.05 s over all tabs.
    assert await timed(asyncio.gather(*(flood(tab) for tab in tabs))) >= 1.1
    carol = RawClient(app)
    await carol.connect("carol")
    assert await timed(ask(carol, "nope", {})) < 0.1  # others are not slowed down
    for c in (*tabs, carol):
        await c.close()


# -- the same refusal again and again ------------------------------------------------


@override_settings(DOCSYNC={"REFUSAL_BACKOFF": 0.05, "REFUSAL_BACKOFF_MAX": 0.4})
async def test_identical_refusals_wait_longer_each_time_and_start_over_on_success(app):
    tab = RawClient(app)
    await tab.connect("alice")
    create = {**pull(DOC), "serializedDoc": [DOC, "doc", {}]}
    assert "data" in await ask(tab, "sync", create)
    assert await ask(tab, "delete-doc", {"docId": DOC}) == {"success": True}
    gaps = []
    for _ in range(7):  # the official client: again at once after each error
        gaps.append(await timed(ask(tab, "sync", pull(DOC), timeout=3)))
    assert gaps[0] < 0.04, gaps
    for gap, expected in zip(gaps[1:], [0.05, 0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert expected - 0.01 <= gap < expected + 0.6, gaps  # lower bounds: the doubling

    # While a refusal is held back, the connection's other documents are served.
    held = await tab.emit("sync", pull(DOC))
    assert "data" in await ask(tab, "sync", pull(DOC2))
    refused = await answer(tab, held)
    assert "has been deleted" in refused["error"]["message"], refused

    # A success on a document starts its refusals over.
    for _ in range(3):
        await ask(tab, "presence", {"docId": DOC3, "presence": 1})  # not subscribed
    assert "data" in await ask(tab, "sync", pull(DOC3))
    assert await ask(tab, "unsubscribe-doc", {"docId": DOC3}) == {"success": True}
    assert await timed(ask(tab, "presence", {"docId": DOC3, "presence": 1})) < 0.04
    await tab.close()


# -- limits ----------------------------------------------------------------------------


@override_settings(DOCSYNC={"MAX_DOCUMENTS_PER_CONNECTION": 2})
async def test_documents_per_connection_are_limited(app):
    tab = RawClient(app)
    await tab.connect("alice")
    assert "data" in await ask(tab, "sync", pull(DOC))
    assert "data" in await ask(tab, "sync", pull(DOC2))
    assert await ask(tab, "sync", pull(DOC3)) == {
        "error": {
            "type": "ValidationError",
            "message": "Too many documents open on this connection (at most 2): "
            "unsubscribe-doc some first.",
        }
    }
    assert "data" in await ask(tab, "sync", pull(DOC2))  # open ones go on
    assert await ask(tab, "unsubscribe-doc", {"docId": DOC}) == {"success": True}
    assert "data" in await ask(tab, "sync", pull(DOC3))
    await tab.close()


@override_settings(DOCSYNC={"MAX_CONNECTIONS_PER_USER": 2})
async def test_connections_per_user_are_limited(app, server):
    first, second, third = RawClient(app), RawClient(app), RawClient(app)
    await first.connect("bob", client="1")
    await second.connect("bob", client="2")
    await third.open()
    await third.send("40" + dumps(auth("bob", client="3")))
    assert await third.recv() == '44{"message":"Too many connections for this user (at most 2)"}'
    carol = RawClient(app)
    await carol.connect("carol")  # others are not concerned
    await first.close()
    for _ in range(50):
        if server.user_connections("bob") < 2:
            break
        await asyncio.sleep(0.01)
    assert (await third.connect_on_open("bob", client="3"))[0].startswith("40{")
    assert server.user_connections("bob") == 2
    for c in (second, third, carol):
        await c.close()


# -- the parts -------------------------------------------------------------------------


@override_settings(DOCSYNC={"ERROR_BURST": 2, "ERROR_WINDOW": 0.2, "ERROR_DELAY": 0.05})
async def test_keyed_throttle_window_and_turns():
    throttle = KeyedThrottle("ERROR")
    for _ in range(3):
        throttle.failed("k")
    assert throttle.throttled("k") and not throttle.throttled("other")
    assert await timed(asyncio.gather(*(enter(throttle, "k") for _ in range(4)))) >= 0.19
    assert await timed(enter(throttle, "other")) < 0.04
    await asyncio.sleep(0.21)
    assert not throttle.throttled("k")  # the window passed
    assert throttle._turns == {}


async def enter(throttle: KeyedThrottle, key: str) -> None:
    async with throttle.turn(key):
        pass


async def test_backoff_doubles_up_to_the_cap_per_key():
    backoff = Backoff(0.1, 0.5)
    assert [backoff.refused(("d", "x")) for _ in range(6)] == [0, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert backoff.refused(("d", "y")) == 0  # another refusal
    assert backoff.refused(("e", "x")) == 0  # another document
    backoff.succeeded("d")
    assert backoff.refused(("d", "x")) == 0
    assert backoff.refused(("e", "x")) == 0.1
