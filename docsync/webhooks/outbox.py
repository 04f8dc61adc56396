"""The outbox: turning document rows into events, and claiming events to send.

Every function here does its database work in one transaction and is meant
to run in the webhook pump's database thread (``docsync.webhooks.pump``).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..models import DeliveryStatus, Document, WebhookCursor, WebhookDelivery, WebhookReceiver
from .types import Receiver, parse_events

#: An event before it is written: (type, doc_id or "", data).
Event = tuple[str, str, dict[str, Any]]


def admin_receivers(using: str) -> list[Receiver]:
    """The active receivers configured in the admin."""
    rows = WebhookReceiver.objects.using(using).filter(active=True).order_by("pk")
    return [
        Receiver(key=f"admin:{r.pk}", url=r.url, secret=r.secret, events=parse_events(r.events))
        for r in rows
    ]


def event_body(event_id: uuid.UUID, event_type: str, data: dict[str, Any], at: datetime) -> str:
    """The JSON body receivers get: ``id`` (to dedupe on), ``type``, ``created_at``, ``data``."""
    return json.dumps(
        {"id": str(event_id), "type": event_type, "created_at": at.isoformat(), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def write_events(using: str, events: list[Event], receivers: list[Receiver]) -> int:
    """Write one outbox row per event and receiver that wants it; return how many."""
    now = timezone.now()
    rows = []
    for event_type, doc_id, data in events:
        event_id = uuid.uuid4()
        body = event_body(event_id, event_type, data, now)
        rows += [
            WebhookDelivery(
                event_id=event_id,
                event_type=event_type,
                doc_id=doc_id,
                body=body,
                receiver=r.key,
                url=r.url,
                next_attempt_at=now,
            )
            for r in receivers
            if r.wants(event_type)
        ]
    WebhookDelivery.objects.using(using).bulk_create(rows)
    return len(rows)


@dataclass
class Check:
    """What :func:`check_documents` found: events written, and documents to look at later."""

    written: int
    later: dict[str, float]  # doc_id -> seconds until it has been quiet long enough


def check_documents(
    using: str, doc_ids: dict[str, bool], receivers: list[Receiver], quiet: float
) -> Check:
    """Compare documents with their cursors; write their events and advance the cursors.

    ``doc_ids`` maps each document to whether it is overdue (it gets its
    ``document.changed`` even if changed less than ``quiet`` seconds ago).
    The cursors are locked, so two processes never announce one change twice.
    """
    with transaction.atomic(using=using):
        docs = _documents(using, list(doc_ids))
        cursors = _locked_cursors(using, [doc.pk for doc in docs])
        now, events, later, changed = timezone.now(), [], {}, []
        for doc in docs:
            cursor = cursors[doc.pk]
            wait = quiet - (now - doc.updated_at).total_seconds()
            if doc.deleted_at is None and wait > 0 and not doc_ids[doc.doc_id]:
                later[doc.doc_id] = wait  # changed lately, maybe by another process
                continue
            found = document_events(doc, cursor)
            if found:
                cursor.notified_at = now
                events += found
                changed.append(cursor)
        WebhookCursor.objects.using(using).bulk_update(changed, ["clock", "deleted", "notified_at"])
        written = write_events(using, events, receivers)
    return Check(written, later)


def _documents(using: str, doc_ids: list[str]) -> list[Document]:
    fields = ("pk", "doc_id", "doc_type", "latest_clock", "deleted_at", "updated_at")
    docs = Document.objects.using(using).filter(doc_id__in=doc_ids, latest_clock__gte=0)
    return list(docs.only(*fields).order_by("pk"))


def _locked_cursors(using: str, pks: list[int]) -> dict[int, WebhookCursor]:
    now = timezone.now()
    new = [WebhookCursor(document_id=pk, notified_at=now) for pk in pks]
    WebhookCursor.objects.using(using).bulk_create(new, ignore_conflicts=True)
    rows = WebhookCursor.objects.using(using).select_for_update().filter(document_id__in=pks)
    return {c.document_id: c for c in rows.order_by("document_id")}


def document_events(doc: Document, cursor: WebhookCursor) -> list[Event]:
    """The events that bring ``cursor`` up to ``doc`` (and advance it)."""
    base = {"doc_id": doc.doc_id, "doc_type": doc.doc_type, "clock": doc.latest_clock}
    events: list[Event] = []
    deleted = doc.deleted_at is not None
    if deleted and not cursor.deleted:
        events.append(("document.deleted", doc.doc_id, base))
    elif not deleted and cursor.deleted:
        events.append(("document.restored", doc.doc_id, base))
    if not deleted and doc.latest_clock > cursor.clock:
        data = {**base, "previous_clock": cursor.clock}
        events.append(("document.changed", doc.doc_id, data))
    cursor.deleted, cursor.clock = deleted, max(cursor.clock, doc.latest_clock)
    return events


def sweep(using: str, after_pk: int, limit: int) -> tuple[list[str], int | None]:
    """Documents after ``after_pk`` (by pk, at most ``limit`` looked at) that differ from
    their cursors, and the pk to go on after (``None``: the end was reached)."""
    rows = list(
        Document.objects.using(using)
        .filter(pk__gt=after_pk, latest_clock__gte=0)
        .order_by("pk")
        .values_list(
            "pk",
            "doc_id",
            "latest_clock",
            "deleted_at",
            "webhook_cursor__clock",
            "webhook_cursor__deleted",
        )[:limit]
    )
    differ = [
        doc_id
        for _, doc_id, latest, deleted_at, clock, deleted in rows
        if latest > (clock or 0) or (deleted_at is not None) != bool(deleted)
    ]
    return differ, (rows[-1][0] if len(rows) == limit else None)


@dataclass(frozen=True)
class Claimed:
    """One delivery taken by this process for ``lease`` seconds."""

    pk: int
    event_id: str
    event_type: str
    receiver: str
    body: str
    attempts: int


def claim(using: str, limit: int, lease: float) -> list[Claimed]:
    """Take up to ``limit`` due deliveries; others skip them until the lease ends.

    Rows are locked with ``FOR UPDATE SKIP LOCKED`` where the database has
    it (PostgreSQL, MariaDB 10.6+), so several processes share the work;
    SQLite has no row locks (one delivering process only).
    """
    now = timezone.now()
    skip = connections[using].features.has_select_for_update_skip_locked
    with transaction.atomic(using=using):
        due = WebhookDelivery.objects.using(using).select_for_update(skip_locked=skip)
        due = due.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        rows = list(
            due.order_by("next_attempt_at", "pk").values_list(
                "pk", "event_id", "event_type", "receiver", "body", "attempts"
            )[:limit]
        )
        if rows:
            until = now + timedelta(seconds=lease)
            taken = WebhookDelivery.objects.using(using).filter(pk__in=[r[0] for r in rows])
            taken.update(next_attempt_at=until)
    return [Claimed(pk, str(eid), etype, rec, body, n) for pk, eid, etype, rec, body, n in rows]


@dataclass(frozen=True)
class Result:
    """How one attempt went: ``status`` the HTTP status (``None``: no answer)."""

    claimed: Claimed
    ok: bool
    status: int | None = None
    error: str = ""


def backoff(attempts: int, first: float, most: float) -> float:
    """Seconds before attempt ``attempts + 1``: ``first`` doubled each time, at most ``most``,
    with up to 10% jitter so that a backlog does not come back all at once."""
    delay = min(most, first * 2 ** max(0, attempts - 1))
    return float(delay * random.uniform(0.9, 1.0))


def record(
    using: str, results: list[Result], max_attempts: int, first: float, most: float
) -> set[str]:
    """Store what became of each attempt; return the receivers that failed this time."""
    now, failed = timezone.now(), set()
    rows = WebhookDelivery.objects.using(using)
    with transaction.atomic(using=using):
        for result in results:
            attempts = result.claimed.attempts + 1
            fields: dict[str, Any] = {"attempts": attempts, "last_status_code": result.status}
            if result.ok:
                fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now, last_error="")
            else:
                failed.add(result.claimed.receiver)
                fields["last_error"] = result.error[:2000]
                if attempts >= max_attempts:
                    fields["status"] = DeliveryStatus.FAILED
                else:
                    delay = backoff(attempts, first, most)
                    fields["next_attempt_at"] = now + timedelta(seconds=delay)
            rows.filter(pk=result.claimed.pk).update(**fields)
    return failed


def any_due(using: str) -> bool:
    """Whether a pending delivery is due now."""
    rows = WebhookDelivery.objects.using(using)
    return rows.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()).exists()


def retry_backlog(using: str, receiver: str) -> int:
    """Make every pending delivery to ``receiver`` that failed before due now (it answers again)."""
    pending = WebhookDelivery.objects.using(using).filter(
        receiver=receiver, status=DeliveryStatus.PENDING, attempts__gt=0
    )
    return pending.update(next_attempt_at=timezone.now())


def retry_now(using: str, pks: list[int]) -> int:
    """Make the given deliveries due now, pending again if they had failed for good."""
    rows = (
        WebhookDelivery.objects.using(using)
        .filter(pk__in=pks)
        .exclude(status=DeliveryStatus.DELIVERED)
    )
    return rows.update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now())
