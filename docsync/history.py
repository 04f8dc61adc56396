"""A document's history: who changed what, its state at any clock, restore.

Squashing moves the batches it folds from the log to history and keeps its
result as a *version* (``ProviderTransaction.archive_operations`` /
``save_version``), in the transaction that stores the snapshot, so every
acknowledged batch is always either in the log or in history. The state at
clock ``N`` is the newest version at or below ``N`` with the batches after
it folded in by the document's binding.

A restore stores the state of an older clock as a new change: a snapshot and
a version at a new clock (the latest plus one), attributed to the user who
restored. A client whose clock is older than the server's snapshot gets the
snapshot on its next sync and replaces its view (PROTOCOL §4 step 3); after
the commit, ``dirty`` goes to every connection subscribed to the document
(the channel layer: every process) and ``docsync.signals.doc_restored`` is
sent.

Everything here is plain synchronous code: call it from a view, a task, a
management command or inside ``database_sync_to_async``; it may run inside
the caller's ``transaction.atomic()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from . import signals, webhooks
from .bindings.base import BindingRegistry
from .exceptions import DocumentDeleted, DocumentNotFound, HistoryUnavailable, InvalidValue
from .groups import dirty, doc_group
from .providers.base import (
    BaseProvider,
    BatchRecord,
    DocRecord,
    Origin,
    ProviderTransaction,
    VersionRecord,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryEntry:
    """One change in a document's history, as a timeline shows it.

    ``kind`` is ``"batch"`` (operations a client sent; ``operations`` says
    how many values), ``"restore"`` (the state of clock ``restored_from``
    stored again), ``"snapshot"`` (the first snapshot a client sent) or
    ``"squash"`` (a squash result whose batches were pruned). ``version`` is
    true when the whole state at this clock is kept (a squash folded the log
    up to this batch, or a restore or snapshot).
    """

    clock: int
    kind: str
    user_id: str | None
    device_id: str | None
    client_id: str | None
    created_at: datetime | None
    operations: int = 0
    restored_from: int | None = None
    version: bool = False


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_document` did: ``clock``'s state stored at ``new_clock``."""

    doc_id: str
    clock: int
    new_clock: int
    user_id: str | None


def document_history(
    provider: BaseProvider, doc_id: str, *, before_clock: int | None = None, limit: int = 50
) -> list[HistoryEntry]:
    """The newest ``limit`` entries of ``doc_id``'s history with a clock below ``before_clock``.

    Newest first, one entry per clock; page on with ``before_clock`` set to
    the last entry's clock. Raises :class:`DocumentNotFound` /
    :class:`DocumentDeleted`.
    """
    up_to = None if before_clock is None else before_clock - 1
    with provider.transaction("readonly", doc_id) as tx:
        _live_record(tx, doc_id)
        batches = tx.get_history(0, up_to, limit=limit, newest_first=True)
        versions = tx.get_versions(up_to, limit=limit)
    return _entries(batches, versions, limit)[:limit]


def _entries(
    batches: list[BatchRecord], versions: list[VersionRecord], limit: int
) -> list[HistoryEntry]:
    kept = {version.clock: version for version in versions}
    entries = [_batch_entry(batch, batch.clock in kept) for batch in batches]
    have = {batch.clock for batch in batches}
    # Below the oldest batch of a full page, the next page may hold its batch.
    oldest = batches[-1].clock if batches and len(batches) == limit else None
    for version in versions:
        if version.clock not in have and (oldest is None or version.clock > oldest):
            entries.append(_version_entry(version))
    return sorted(entries, key=lambda entry: entry.clock, reverse=True)


def _batch_entry(batch: BatchRecord, version: bool) -> HistoryEntry:
    o = batch.origin
    return HistoryEntry(
        batch.clock,
        "batch",
        o.user_id,
        o.device_id,
        o.client_id,
        batch.created_at,
        operations=len(batch.operations),
        version=version,
    )


def _version_entry(version: VersionRecord) -> HistoryEntry:
    o = version.origin
    return HistoryEntry(
        version.clock,
        version.kind,
        o.user_id,
        o.device_id,
        o.client_id,
        version.created_at,
        restored_from=version.restored_from,
        version=True,
    )


def state_at(provider: BaseProvider, bindings: BindingRegistry, doc_id: str, clock: int) -> Any:
    """The serialized state of ``doc_id`` at ``clock``, rebuilt from its history.

    Raises :class:`DocumentNotFound` / :class:`DocumentDeleted`,
    :class:`~docsync.exceptions.InvalidValue` for a clock the document never
    had, and :class:`HistoryUnavailable` when that part of the history was
    pruned (or predates it) or the type has no binding.
    """
    with provider.transaction("readonly", doc_id) as tx:
        record = _live_record(tx, doc_id)
        return _rebuild(tx, bindings, record, clock)


def restore_document(
    provider: BaseProvider,
    bindings: BindingRegistry,
    doc_id: str,
    clock: int,
    user: Any = None,
    *,
    origin: Origin | None = None,
) -> Restored:
    """Store ``doc_id``'s state at ``clock`` as a new change, by ``user``.

    The state becomes the snapshot and a version at the latest clock plus
    one; the pending log moves to history. ``user`` is a Django user (or its
    pk, or ``None``); ``origin`` may name the device and client too. After
    the commit (of the caller's transaction, if any), ``dirty`` goes to
    every connected client and ``doc_restored`` is sent. Raises as
    :func:`state_at` does; nothing is written then.
    """
    user_id = _user_id(user, origin)
    device, client = (origin.device_id, origin.client_id) if origin else (None, None)
    origin = Origin(user_id, device, client)
    with provider.transaction("readwrite", doc_id) as tx:
        record = _live_record(tx, doc_id)
        state = _rebuild(tx, bindings, record, clock)
        new_clock = record.latest_clock + 1
        tx.archive_operations(record.latest_clock)
        tx.save_serialized_doc(state, new_clock, origin)
        tx.save_version(state, new_clock, kind="restore", origin=origin, restored_from=clock)
        tx.record_squash_failure(None)
        webhooks.restored_on(
            provider, doc_id, clock=new_clock, restored_from=clock, user_id=user_id
        )
    restored = Restored(doc_id, clock, new_clock, user_id)
    after_commit(provider, lambda: _after_restore(provider, restored, user))
    return restored


def after_commit(provider: BaseProvider, func: Callable[[], None]) -> None:
    """Run ``func`` once what ``provider`` wrote is committed.

    A provider on a Django database (``using``) commits with the caller's
    outermost transaction (``transaction.on_commit``); any other provider has
    committed when its transaction block ended, so ``func`` runs at once.
    """
    using = getattr(provider, "using", None)
    if isinstance(using, str):
        transaction.on_commit(func, using=using)
    else:
        func()


def _user_id(user: Any, origin: Origin | None) -> str | None:
    if user is None:
        return origin.user_id if origin else None
    pk = getattr(user, "pk", user)
    return None if pk is None else str(pk)


def _live_record(tx: ProviderTransaction, doc_id: str) -> DocRecord:
    record = tx.get_serialized_doc(with_snapshot=False)
    if record is None:
        raise DocumentNotFound(doc_id)
    if record.deleted:
        raise DocumentDeleted(doc_id)
    return record


def _rebuild(
    tx: ProviderTransaction, bindings: BindingRegistry, record: DocRecord, clock: int
) -> Any:
    """The state at ``clock``: the newest version at or below it, plus the batches after."""
    if (
        isinstance(clock, bool)
        or not isinstance(clock, int)
        or not 0 <= clock <= record.latest_clock
    ):
        raise InvalidValue(("clock",), f"must be a clock from 0 to {record.latest_clock}")
    base, base_clock = _base(tx, record, clock)
    batches = tx.get_history(base_clock, clock)
    if len(batches) != clock - base_clock:
        raise HistoryUnavailable(
            f"The history of document {record.doc_id!r} at clock {clock} is not kept "
            f"(pruned, or from before docsync kept history)."
        )
    if not batches and (base is not None or clock > 0):
        return base
    binding = bindings.get(record.doc_type)
    if binding is None:
        raise HistoryUnavailable(
            f"Document type {record.doc_type!r} has no binding in DOCSYNC['BINDINGS'] "
            "to rebuild its history with."
        )
    operations = [value for batch in batches for value in batch.operations]
    return binding.squash(base, operations, doc_type=record.doc_type, doc_id=record.doc_id)


def _base(tx: ProviderTransaction, record: DocRecord, clock: int) -> tuple[Any, int]:
    """The newest whole state at or below ``clock``: a version, or the snapshot."""
    versions = tx.get_versions(clock, limit=1, with_snapshot=True)
    base, base_clock = (versions[0].serialized_doc, versions[0].clock) if versions else (None, 0)
    if record.has_snapshot and base_clock < record.clock <= clock:
        # A snapshot without its version: squashed before history was kept.
        full = tx.get_serialized_doc()
        return (full.serialized_doc if full else None), record.clock
    return base, base_clock


def _after_restore(provider: BaseProvider, restored: Restored, user: Any) -> None:
    """After the commit: every subscriber resyncs; receivers hear of it."""
    send_to_group(doc_group(restored.doc_id), dirty(restored.doc_id))
    if not signals.doc_restored.has_listeners():
        return
    responses = signals.doc_restored.send_robust(
        sender=type(provider),
        provider=provider,
        doc_id=restored.doc_id,
        clock=restored.new_clock,
        restored_from=restored.clock,
        user_id=restored.user_id,
        user=user if hasattr(user, "pk") else None,
        document=_document_row(provider, restored.doc_id),
    )
    for receiver, result in responses:
        if isinstance(result, Exception):
            logger.error(
                "docsync: doc_restored receiver %r failed: %s",
                receiver,
                result,
                exc_info=(type(result), result, result.__traceback__),
            )


def _document_row(provider: BaseProvider, doc_id: str) -> Any:
    using = getattr(provider, "using", None)
    if using is None:
        return None
    from .models import Document

    return Document.objects.using(using).defer("snapshot").filter(doc_id=doc_id).first()


def send_to_group(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group`` over the channel layer; log, never raise.

    From synchronous code (``async_to_sync``) or from code running on an
    event loop (a task).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception as exc:  # noqa: BLE001  (clients recover on their next sync)
            logger.error("docsync: could not send %s to %s: %s", message["type"], group, exc)
        return
    task = asyncio.get_running_loop().create_task(layer.group_send(group, message))
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("docsync: a channel-layer message failed: %s", task.exception())


# -- retention ---------------------------------------------------------------


def prune_document(
    provider: BaseProvider, doc_id: str, retention: dict[str, int], *, now: datetime | None = None
) -> tuple[int, int]:
    """Forget ``doc_id``'s history older than ``retention`` keeps; ``(versions, batches)``.

    ``retention`` is ``HISTORY_RETENTION``: ``{"versions": N}`` keeps the
    newest N versions, ``{"days": N}`` what is newer than N days plus the
    version it builds on; with both, what either keeps. Every clock from the
    oldest kept version on stays rebuildable.
    """
    with provider.transaction("readwrite", doc_id) as tx:
        record = tx.get_serialized_doc(with_snapshot=False)
        if record is None or record.deleted:
            return 0, 0
        keep_from = _keep_from(tx.get_versions(), retention, now or timezone.now())
        if keep_from is None:
            return 0, 0
        return tx.prune_history(keep_from)


def _keep_from(
    versions: list[VersionRecord], retention: dict[str, int], now: datetime
) -> int | None:
    """The clock of the oldest version ``retention`` keeps (``None``: keep all)."""
    candidates: list[int | None] = []
    if "versions" in retention and len(versions) > retention["versions"]:
        candidates.append(versions[retention["versions"] - 1].clock)
    if "days" in retention:
        cutoff = now - timedelta(days=retention["days"])
        older = [v for v in versions if v.created_at is not None and v.created_at < cutoff]
        # The newest version before the cutoff: what comes after builds on it.
        candidates.append(older[0].clock if older else None)
    if not candidates or None in candidates:
        return None
    return min(c for c in candidates if c is not None)
