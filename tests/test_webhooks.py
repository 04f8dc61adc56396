"""Webhooks without a server: signatures, settings, and the outbox on every database."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from docsync.checks import settings_problems
from docsync.conf import docsync_settings
from docsync.models import DeliveryStatus, Document, WebhookDelivery, WebhookReceiver
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider
from docsync.webhooks import SignatureError, document_restored, outbox, sign, verify_signature
from docsync.webhooks.checks import check_webhooks
from docsync.webhooks.types import Receiver, settings_receivers
from tests.conftest_db import db_param, require_database

DATABASES = [
    db_param("default", "default", id="sqlite"),
    db_param("postgres", "postgres", id="postgres"),
    db_param("mariadb", "mariadb", id="mariadb"),
]
RECEIVER = Receiver(key="settings:test", url="http://127.0.0.1:9/hook", secret="s")
ORIGIN = Origin(user_id=None, device_id="d", client_id="c")


# -- signatures ------------------------------------------------------------------


def test_a_signature_verifies_and_tells_its_timestamp():
    body = b'{"id":"1"}'
    assert verify_signature("secret", body, sign("secret", body, 1_700_000_000), now=1_700_000_010)


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "No timestamp"),
        ("v1=abc", "No timestamp"),
        ("t=1700000000,v1=0000", "does not match"),
        (sign("other", b"{}", 1_700_000_000), "does not match"),
        (sign("secret", b"{}", 1_699_999_000), "old"),
    ],
)
def test_a_bad_old_or_missing_signature_is_refused(header, message):
    with pytest.raises(SignatureError, match=message):
        verify_signature("secret", b"{}", header, now=1_700_000_000)


def test_the_signature_covers_the_timestamp():
    header = sign("secret", b"{}", 1_700_000_000)
    forged = header.replace("t=1700000000", "t=1700000100")
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("secret", b"{}", forged, now=1_700_000_100)


# -- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"url": "http://x", "secret": "s"},
        [{"url": "ftp://x", "secret": "s"}],
        [{"url": "http://x"}],
        [{"url": "http://x", "secret": "s", "events": ["document.edited"]}],
        [{"url": "http://x", "secret": "s", "retries": 3}],
        [{"url": "http://x", "secret": "s"}, {"url": "http://x", "secret": "t"}],
    ],
)
def test_a_wrong_receiver_setting_names_the_key(value):
    with override_settings(DOCSYNC={"WEBHOOKS": value}):
        if not isinstance(value, list):
            with pytest.raises(ImproperlyConfigured, match=r"DOCSYNC\['WEBHOOKS'\]"):
                docsync_settings.WEBHOOKS  # noqa: B018
            assert any("WEBHOOKS" in m.msg for m in settings_problems())
        else:
            errors = [m for m in check_webhooks(None) if m.id == "docsync.E020"]
            assert errors and all("DOCSYNC['WEBHOOKS']" in m.msg for m in errors)
            assert settings_receivers(value) == [] or len(value) == 2


def test_receivers_without_a_database_are_a_warning():
    hooks = [{"url": "http://x", "secret": "s"}]
    with override_settings(DOCSYNC={"WEBHOOKS": hooks}):
        assert [m.id for m in check_webhooks(None)] == ["docsync.W020"]
    orm = "docsync.providers.orm.ORMProvider"
    with override_settings(DOCSYNC={"WEBHOOKS": hooks, "PROVIDER": orm}):
        assert check_webhooks(None) == []


# -- the outbox ------------------------------------------------------------------------


def write(provider: ORMProvider, doc_id: str, n: int = 1) -> int:
    clock = 0
    for i in range(n):
        with provider.transaction("readwrite", doc_id, doc_type="doc") as tx:
            clock = tx.save_operations([i], ORIGIN)
    return clock


def bodies(using: str, **filters) -> list[dict]:
    rows = WebhookDelivery.objects.using(using).filter(**filters).order_by("pk")
    return [json.loads(r.body) for r in rows]


@pytest.mark.parametrize("using", DATABASES)
def test_a_document_is_announced_once_per_change(using):
    require_database(using)
    provider = ORMProvider(using=using)
    assert write(provider, "a", 3) == 3
    found = outbox.check_documents(using, {"a": False}, [RECEIVER], quiet=0)
    assert found.written == 1 and not found.later
    (event,) = bodies(using)
    assert event["type"] == "document.changed"
    assert event["data"] == {"doc_id": "a", "doc_type": "doc", "clock": 3, "previous_clock": 0}
    # Nothing new: nothing written. One more change: announced from clock 3.
    assert outbox.check_documents(using, {"a": False}, [RECEIVER], quiet=0).written == 0
    write(provider, "a")
    outbox.check_documents(using, {"a": False}, [RECEIVER], quiet=0)
    assert bodies(using)[-1]["data"]["previous_clock"] == 3


@pytest.mark.parametrize("using", DATABASES)
def test_a_document_changed_lately_waits_unless_overdue(using):
    require_database(using)
    write(ORMProvider(using=using), "busy")
    found = outbox.check_documents(using, {"busy": False}, [RECEIVER], quiet=60)
    assert found.written == 0 and 59 < found.later["busy"] <= 60
    found = outbox.check_documents(using, {"busy": True}, [RECEIVER], quiet=60)
    assert found.written == 1


@pytest.mark.parametrize("using", DATABASES)
def test_deleting_and_undeleting_are_announced(using):
    require_database(using)
    provider = ORMProvider(using=using)
    write(provider, "d", 2)
    with provider.transaction("readwrite", "d") as tx:
        tx.delete_doc()
    outbox.check_documents(using, {"d": False}, [RECEIVER], quiet=60)
    assert [(e["type"], e["data"]["clock"]) for e in bodies(using)] == [("document.deleted", 2)]
    Document.objects.using(using).filter(doc_id="d").update(deleted_at=None)
    outbox.check_documents(using, {"d": False}, [RECEIVER], quiet=0)
    assert bodies(using)[-1]["type"] == "document.restored"


@pytest.mark.parametrize("using", DATABASES)
def test_the_sweep_finds_every_unannounced_document(using):
    require_database(using)
    provider = ORMProvider(using=using)
    for doc_id in ("s1", "s2", "s3"):
        write(provider, doc_id)
    outbox.check_documents(using, {"s2": False}, [RECEIVER], quiet=0)
    found, after, pages = [], 0, 0
    while after is not None:
        differ, after = outbox.sweep(using, after, 2)
        found += differ
        pages += 1
    assert sorted(found) == ["s1", "s3"] and pages == 2


@pytest.mark.parametrize("using", DATABASES)
def test_an_event_is_written_only_if_its_transaction_commits(using):
    require_database(using)
    with override_settings(DOCSYNC={"WEBHOOKS": [{"url": RECEIVER.url, "secret": "s"}]}):
        with pytest.raises(RuntimeError), transaction.atomic(using=using):
            document_restored("r", using=using, clock=4)
            raise RuntimeError("rolled back")
        assert not bodies(using)
        with transaction.atomic(using=using):
            document_restored("r", using=using, clock=4)
    (event,) = bodies(using, event_type="document.restored")
    assert event["data"] == {"doc_id": "r", "clock": 4}


@pytest.mark.parametrize("using", DATABASES)
def test_failed_attempts_back_off_then_give_up(using):
    require_database(using)
    outbox.write_events(using, [("client.connected", "", {"user_id": "u"})], [RECEIVER])
    for attempt in range(1, 4):
        (claimed,) = outbox.claim(using, 10, lease=60)
        assert outbox.claim(using, 10, lease=60) == []  # leased
        failed = outbox.record(using, [outbox.Result(claimed, ok=False, error="HTTP 503")], 3, 1, 2)
        assert failed == {RECEIVER.key}
        row = WebhookDelivery.objects.using(using).get()
        assert row.attempts == attempt and row.last_error == "HTTP 503"
        WebhookDelivery.objects.using(using).update(next_attempt_at=timezone.now())
    assert row.status == DeliveryStatus.FAILED
    assert outbox.retry_now(using, [row.pk]) == 1
    (claimed,) = outbox.claim(using, 10, lease=60)
    outbox.record(using, [outbox.Result(claimed, ok=True, status=204)], 3, 1, 2)
    row.refresh_from_db(using=using)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 4, 204)


def test_back_off_doubles_up_to_its_limit():
    delays = [outbox.backoff(n, 1.0, 10.0) for n in range(1, 7)]
    assert all(0.9 * m <= d <= m for d, m in zip(delays, [1, 2, 4, 8, 10, 10], strict=True))


@pytest.mark.parametrize("using", DATABASES)
def test_a_receiver_back_again_gets_its_backlog_at_once(using):
    require_database(using)
    events = [("client.connected", "", {}), ("client.connected", "", {})]
    outbox.write_events(using, events, [RECEIVER])
    later = timezone.now() + timedelta(hours=1)
    WebhookDelivery.objects.using(using).update(attempts=5, next_attempt_at=later)
    assert outbox.retry_backlog(using, RECEIVER.key) == 2
    assert len(outbox.claim(using, 10, lease=60)) == 2


@pytest.mark.django_db
def test_admin_receivers_get_the_events_they_asked_for():
    WebhookReceiver.objects.create(name="a", url="http://a/", secret="s", events="client.connected")
    WebhookReceiver.objects.create(name="off", url="http://b/", secret="s", active=False)
    receivers = outbox.admin_receivers("default")
    assert [r.url for r in receivers] == ["http://a/"]
    events = [("client.connected", "", {}), ("document.changed", "x", {})]
    assert outbox.write_events("default", events, receivers) == 1


@pytest.mark.django_db
def test_the_admin_lists_deliveries_and_retries_them(admin_client):
    outbox.write_events("default", [("document.deleted", "gone", {"doc_id": "gone"})], [RECEIVER])
    WebhookDelivery.objects.update(status="failed", last_error="ConnectionRefusedError: nope")
    page = admin_client.get("/admin/docsync/webhookdelivery/?status__exact=failed")
    assert page.status_code == 200 and b"ConnectionRefusedError" in page.content
    pk = WebhookDelivery.objects.get().pk
    response = admin_client.post(
        "/admin/docsync/webhookdelivery/", {"action": "retry", "_selected_action": [pk]}
    )
    assert response.status_code == 302
    row = WebhookDelivery.objects.get()
    assert row.status == "pending" and row.next_attempt_at <= timezone.now()
    assert admin_client.get("/admin/docsync/webhookreceiver/").status_code == 200


def test_signature_timestamps_are_now():
    _, v = sign("s", b"x").split(",")
    assert abs(int(sign("s", b"x").split(",")[0][2:]) - time.time()) < 5 and v.startswith("v1=")


def test_the_documented_receiver_checks_signatures_and_dedupes(rf):
    from tests.snippets import load_module

    view = load_module("webhook_receiver")
    body = json.dumps({"id": "evt-1", "type": "client.connected", "data": {}}).encode()

    def post(signature: str):
        request = rf.post("/hook", body, "application/json", HTTP_DOCSYNC_SIGNATURE=signature)
        return view.docsync_webhook(request)

    assert post(sign("wrong", body)).status_code == 400
    assert post(sign(view.SECRET, body, timestamp=int(time.time()) - 3600)).status_code == 400
    assert [post(sign(view.SECRET, body)).status_code for _ in range(2)] == [204, 204]
    assert view.handled == ["evt-1"]


@pytest.mark.django_db(transaction=True)
def test_a_write_is_noted_once_committed_and_only_with_receivers():
    from docsync import changes

    provider = ORMProvider()
    write(provider, "off")
    assert changes.take_due(0, 0) == {}  # no pump wants hints: nothing kept
    changes.enable()
    try:
        with transaction.atomic():
            write(provider, "n")
            assert changes.pending_count() == 0  # not committed yet
        assert list(changes.take_due(0, 60)) == [("default", "n")]
        write(provider, "n")
        assert changes.take_due(60, 60) == {}  # not quiet yet
        first = time.monotonic() - 10
        changes.put_back(("default", "n"), first, due_in=0, quiet=60)
        assert changes.take_due(60, 60) == {}
        assert changes.take_due(60, 5) == {("default", "n"): first}  # overdue
    finally:
        changes.disable()


@pytest.mark.parametrize("using", DATABASES)
def test_a_restore_is_announced_in_its_transaction(using):
    require_database(using)
    from docsync.bindings import BindingRegistry
    from docsync.history import restore_document
    from tests.bindings import ListBinding

    bindings = BindingRegistry()
    bindings.register("doc", ListBinding())
    provider = ORMProvider(using=using)
    write(provider, "v", 3)
    hooks = [{"url": RECEIVER.url, "secret": "s"}]
    with override_settings(
        DOCSYNC={"WEBHOOKS": hooks, "BINDINGS": {"doc": "tests.bindings.ListBinding"}}
    ):
        restore_document(provider, bindings, "v", 1)
    (event,) = bodies(using, event_type="document.restored")
    assert event["data"] == {"doc_id": "v", "clock": 4, "restored_from": 1, "user_id": None}
