"""docsync.metrics in one process: the view, the refusal reasons, and the
counts the live-server test (tests/test_metrics_e2e.py) cannot provoke:
squash failures, an unreachable Redis, channel layer and database, and the
refusal back-off."""

from __future__ import annotations

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from docsync import metrics
from docsync.consumers import DocSyncConsumer
from docsync.exceptions import StorageUnavailable
from docsync.fanout import FanOutMixin
from docsync.hops import hop
from docsync.outage import StorageOutage
from docsync.redis_state import RedisState
from docsync.throttle import Backoff
from tests.test_squash_server import make_server, settle, sync
from tests.wsclient import RawClient

TOKEN = "a-metrics-token-of-the-tests"
#: Nothing listens here: every call to it fails at once.
NOWHERE = "redis://127.0.0.1:1/0"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "message, reason",
    [
        ("Authentication failed: invalid credentials", "invalid_credentials"),
        ("Authentication failed: invalid token", "invalid_handshake"),
        ("Authentication failed: claimed user ID mismatch", "claimed_user_mismatch"),
        ("Authentication required", "authentication_required"),
        ("Authentication error: Token expired", "token_expired"),
        ("Authentication error: internal server error", "authentication_error"),
        ("Too many connections for this user (at most 3)", "too_many_connections"),
        ("Device ID too long (300 characters, at most 255)", "invalid_handshake"),
        ("Client ID required", "invalid_handshake"),
        ("Invalid handshake: auth.token: lone surrogate", "invalid_handshake"),
        (StorageUnavailable().message, "storage_unavailable"),
        ("unsupported_protocol", "unsupported_protocol"),
        ("Something a custom authenticate said, with user 42 in it", "other"),
    ],
)
def test_a_refusal_reason_is_one_of_a_few_words(message, reason):
    assert metrics.refusal_reason(message) == reason


def test_the_view_needs_the_token(client):
    assert client.get("/metrics").status_code == 403  # no METRICS_TOKEN: never served
    with override_settings(DOCSYNC={"METRICS_TOKEN": TOKEN}):
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE docsync_requests_total counter" in response.content


def test_a_short_token_is_refused_by_the_checks():
    from django.core.checks import run_checks

    with override_settings(DOCSYNC={"METRICS_TOKEN": "short"}):
        errors = [e for e in run_checks() if "METRICS_TOKEN" in e.msg]
    assert errors and "at least 16 characters" in errors[0].msg


def test_the_same_refusal_again_counts_a_slowdown():
    before = sample("docsync_slowdowns_total", limiter="refusal_backoff")
    backoff = Backoff(0.1, 1.0)
    assert backoff.refused(("doc", "sync")) == 0.0  # the first answer is not held back
    assert backoff.refused(("doc", "sync")) > 0
    assert sample("docsync_slowdowns_total", limiter="refusal_backoff") == before + 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_failing_squash_is_counted():
    runs = sample("docsync_squash_duration_seconds_count")
    failures = sample("docsync_squash_failures_total")
    server = make_server(threshold=2)
    writer = RawClient(DocSyncConsumer.as_asgi(server=server))
    await writer.connect("alice")
    clock = (await sync(writer, 1, ["boom"], 0))["data"]["clock"]
    await sync(writer, 2, ["a"], clock)
    await settle(server)
    await writer.close()
    assert sample("docsync_squash_failures_total") == failures + 1
    assert sample("docsync_squash_duration_seconds_count") == runs + 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_lost_database_counts_as_unavailable():
    before = sample("docsync_database_errors_total", kind="unavailable")

    def lost() -> None:
        raise StorageUnavailable()

    with pytest.raises(StorageUnavailable):
        await hop(False, lost)
    StorageOutage.succeeded()  # the outage is over, for the tests after this one
    assert sample("docsync_database_errors_total", kind="unavailable") == before + 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_another_database_error_counts_as_error():
    from django.db import connection

    before = sample("docsync_database_errors_total", kind="error")

    def bad_query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")

    with pytest.raises(Exception):  # noqa: B017  (the driver's error, whatever the database)
        await hop(False, bad_query)
    assert sample("docsync_database_errors_total", kind="error") == before + 1


@pytest.mark.asyncio
async def test_an_unreachable_redis_is_counted():
    before = sample("docsync_redis_errors_total")
    state = RedisState(url=NOWHERE)
    assert await state.members("doc") == []  # answered from this process
    assert sample("docsync_redis_errors_total") == before + 1


@pytest.mark.asyncio
async def test_an_unreachable_channel_layer_is_counted():
    from channels_redis.core import RedisChannelLayer

    before = sample("docsync_channel_layer_errors_total", action="group_send")
    consumer = FanOutMixin()
    consumer.channel_layer = RedisChannelLayer(hosts=[NOWHERE])
    await consumer.layer_group_send("docsync.doc.x", {"type": "docsync.dirty"})
    assert sample("docsync_channel_layer_errors_total", action="group_send") == before + 1
