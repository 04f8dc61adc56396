"""``ORMProvider``: documents in the Django database (``docsync.models``).

Each transaction is one ``transaction.atomic()`` that starts by locking the
document's row with ``SELECT ... FOR UPDATE`` and holds it to the end, in both
modes: writers to one document queue up, so clocks are handed out in commit
order without gaps, and a reader never sees a squash half-written. SQLite has
no row locks; there the database must run in ``IMMEDIATE`` transaction mode
(``OPTIONS={"transaction_mode": "IMMEDIATE"}``) so that every transaction
takes the write lock when it begins (system check ``docsync.W010``).

A ``readwrite`` transaction on a document that does not exist yet inserts
its row at once (an upsert on the unique ``doc_id``), so that concurrent
creators queue on that row like everyone else; the losers of the race lock
the winner's row once it commits. The row is removed again at the end if
nothing was written.

Queries per transaction do not depend on the log's length: one to lock,
one per read or write, and one ``UPDATE`` of the document at the end (see
``tests/test_orm_queries.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import changes
from ..exceptions import StorageError, StorageUnavailable
from ..models import ClientCommit as CommitRow
from ..models import (
    Document,
    DocumentVersion,
    HistoryBatch,
    OperationBatch,
    decode_operations,
    decode_snapshot,
    encode_operations,
    encode_snapshot,
)
from ..outage import connection_lost
from ..utils import user_pk
from .base import (
    BaseProvider,
    Batch,
    BatchRecord,
    ClientCommit,
    DocRecord,
    Mode,
    Origin,
    ProviderTransaction,
    VersionRecord,
)

logger = logging.getLogger(__name__)

# latest_clock of a row inserted to take the lock, before anything is written.
PLACEHOLDER_CLOCK = -1


class ORMTransaction(ProviderTransaction):
    """A transaction holding the lock on one :class:`Document` row."""

    def __init__(self, doc_id: str, mode: Mode, doc_type: str | None, using: str) -> None:
        super().__init__(doc_id, mode, doc_type)
        self.using = using
        self.doc: Document | None = None
        # False while the row is only a placeholder inserted to take the lock.
        self.exists = False
        self.dirty: set[str] = set()
        self._snapshot: Any = None
        self._snapshot_loaded = False
        self._users: dict[str, Any] = {}

    # Locking and flushing (called by ORMProvider.transaction).

    def lock(self) -> None:
        self.doc = self._select_for_update()
        self.exists = self.doc is not None
        if self.doc is None and self.mode == "readwrite":
            self._insert_placeholder()

    def _select_for_update(self) -> Document | None:
        # The snapshot (possibly megabytes) is read only when needed.
        queryset = Document.objects.using(self.using).select_for_update().defer("snapshot")
        return queryset.filter(doc_id=self.doc_id).first()

    def _insert_placeholder(self) -> None:
        # An upsert rather than INSERT + IntegrityError: on MariaDB/MySQL a
        # failed duplicate INSERT keeps a shared lock on the row, and two
        # creators upgrading theirs deadlock; ON DUPLICATE KEY UPDATE takes the
        # exclusive lock at once. Concurrent creators queue on the new row
        # and, once its creator commits, lock it like any existing document.
        connection = connections[self.using]
        target: dict[str, Any] = {}
        if connection.features.supports_update_conflicts_with_target:
            target["unique_fields"] = ["doc_id"]
        placeholder = Document(
            doc_id=self.doc_id, doc_type=self.doc_type or "", latest_clock=PLACEHOLDER_CLOCK
        )
        Document.objects.using(self.using).bulk_create(
            [placeholder], update_conflicts=True, update_fields=["doc_id"], **target
        )
        self.doc = self._select_for_update()
        # Our own row still has the placeholder clock, which is never committed.
        self.exists = self.doc is not None and self.doc.latest_clock != PLACEHOLDER_CLOCK

    def flush(self) -> None:
        if self.doc is None:
            return
        if not self.exists:
            self.doc.delete(using=self.using)
        elif self.dirty:
            self.doc.save(using=self.using, update_fields=self.dirty | {"updated_at"})

    # The contract.

    def get_serialized_doc(self, with_snapshot: bool = True) -> DocRecord | None:
        doc = self.doc
        if doc is None or not self.exists:
            return None
        return DocRecord(
            doc_id=self.doc_id,
            doc_type=doc.doc_type,
            serialized_doc=self._get_snapshot() if with_snapshot else None,
            clock=doc.snapshot_clock,
            latest_clock=doc.latest_clock,
            deleted=doc.deleted_at is not None,
            owner_id=None if doc.owner_id is None else str(doc.owner_id),
            has_snapshot=bool(doc.snapshot_format),
        )

    def get_operations(self, after_clock: int, up_to_clock: int | None = None) -> list[Batch]:
        if self.doc is None or not self.exists:
            return []
        batches = self.doc.batches.using(self.using).filter(clock__gt=after_clock)
        if up_to_clock is not None:
            batches = batches.filter(clock__lte=up_to_clock)
        rows = batches.order_by("clock").values_list("clock", "operations_format", "operations")
        return [Batch(clock, decode_operations(fmt, data)) for clock, fmt, data in rows]

    def save_operations(self, operations: list[Any], origin: Origin) -> int:
        doc = self._writable_doc(origin)
        fmt, data = encode_operations(operations)
        clock = doc.latest_clock + 1
        OperationBatch.objects.using(self.using).create(
            document=doc,
            clock=clock,
            operations=data,
            operations_format=fmt,
            user=self._user(origin.user_id),
            device_id=origin.device_id or "",
            client_id=origin.client_id or "",
        )
        self._set(latest_clock=clock)
        return clock

    def save_serialized_doc(
        self, serialized_doc: Any, clock: int, origin: Origin | None = None
    ) -> None:
        doc = self._writable_doc(origin)
        fmt, data = encode_snapshot(serialized_doc)
        self._snapshot, self._snapshot_loaded = serialized_doc, True
        self._set(
            snapshot=data,
            snapshot_format=fmt,
            snapshot_clock=clock,
            latest_clock=max(doc.latest_clock, clock),
        )

    def delete_operations(self, up_to_clock: int) -> int:
        self.check_writable()
        if self.doc is None or not self.exists:
            return 0
        batches = self.doc.batches.using(self.using).filter(clock__lte=up_to_clock)
        return batches.delete()[0]

    def get_client_commit(self, client_id: str) -> ClientCommit | None:
        if self.doc is None or not self.exists:
            return None
        rows = self.doc.client_commits.using(self.using).filter(client_id=client_id)
        row = rows.values_list("clocks", "count", "digest").first()
        if row is None:
            return None
        clocks, count, digest = row
        return ClientCommit(tuple(int(c) for c in clocks.split()), count, digest)

    def save_client_commit(self, client_id: str, commit: ClientCommit) -> None:
        self.check_writable()
        assert self.doc is not None and self.exists, "save_client_commit before the document"
        # One upsert on the unique (document, client_id), as for the placeholder.
        unique_fields = None
        if connections[self.using].features.supports_update_conflicts_with_target:
            unique_fields = ["document", "client_id"]
        row = CommitRow(
            document=self.doc,
            client_id=client_id,
            clocks=" ".join(map(str, commit.clocks)),
            count=commit.count,
            digest=commit.digest,
        )
        CommitRow.objects.using(self.using).bulk_create(
            [row],
            update_conflicts=True,
            update_fields=["clocks", "count", "digest", "updated_at"],
            unique_fields=unique_fields,
        )

    def delete_doc(self) -> bool:
        self.check_writable()
        if self.doc is None or not self.exists or self.doc.deleted_at is not None:
            return False
        self.doc.batches.using(self.using).all().delete()
        self.doc.history.using(self.using).all().delete()
        self.doc.versions.using(self.using).all().delete()
        self.doc.client_commits.using(self.using).all().delete()
        self._snapshot, self._snapshot_loaded = None, True
        self._set(snapshot=None, snapshot_format="", deleted_at=timezone.now())
        return True

    # History.

    def archive_operations(self, up_to_clock: int) -> int:
        self.check_writable()
        if self.doc is None or not self.exists:
            return 0
        # One INSERT ... SELECT: the rows never travel through Python.
        with connections[self.using].cursor() as cursor:
            cursor.execute(_archive_sql(connections[self.using]), [self.doc.pk, up_to_clock])
        batches = self.doc.batches.using(self.using).filter(clock__lte=up_to_clock)
        return batches.delete()[0]

    def save_version(
        self,
        serialized_doc: Any,
        clock: int,
        *,
        kind: str,
        origin: Origin | None = None,
        restored_from: int | None = None,
    ) -> None:
        self.check_writable()
        assert self.doc is not None and self.exists, "save_version before the document"
        if serialized_doc is self._snapshot and "snapshot" in self.dirty:
            # The snapshot just stored (a squash, a restore): encoded once.
            fmt, data = self.doc.snapshot_format, self.doc.snapshot
        else:
            fmt, data = encode_snapshot(serialized_doc)
        DocumentVersion.objects.using(self.using).create(
            document=self.doc,
            clock=clock,
            kind=kind,
            snapshot=data,
            snapshot_format=fmt,
            user=self._user(origin.user_id if origin else None),
            device_id=(origin.device_id if origin else None) or "",
            client_id=(origin.client_id if origin else None) or "",
            restored_from=restored_from,
        )

    def get_history(
        self,
        after_clock: int = 0,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[BatchRecord]:
        if self.doc is None or not self.exists:
            return []
        rows: list[tuple[Any, ...]] = []
        for related in (self.doc.history, self.doc.batches):
            batches = related.using(self.using).filter(clock__gt=after_clock)
            if up_to_clock is not None:
                batches = batches.filter(clock__lte=up_to_clock)
            batches = batches.order_by("-clock" if newest_first else "clock")
            fields = ("clock", "operations_format", "operations", "user_id", "device_id")
            values = batches.values_list(*fields, "client_id", "created_at")
            rows.extend(values[:limit] if limit is not None else values)
        rows.sort(key=lambda row: row[0], reverse=newest_first)
        return [_batch_record(row) for row in rows[:limit]]

    def get_versions(
        self,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        with_snapshot: bool = False,
    ) -> list[VersionRecord]:
        if self.doc is None or not self.exists:
            return []
        versions = self.doc.versions.using(self.using).order_by("-clock")
        if up_to_clock is not None:
            versions = versions.filter(clock__lte=up_to_clock)
        if not with_snapshot:
            versions = versions.defer("snapshot")
        rows = versions[:limit] if limit is not None else versions
        return [_version_record(row, with_snapshot) for row in rows]

    def prune_history(self, before_clock: int) -> tuple[int, int]:
        self.check_writable()
        if self.doc is None or not self.exists:
            return 0, 0
        versions = self.doc.versions.using(self.using).filter(clock__lt=before_clock)
        batches = self.doc.history.using(self.using).filter(clock__lte=before_clock)
        return versions.delete()[0], batches.delete()[0]

    def record_squash_failure(self, message: str | None) -> None:
        self.check_writable()
        message = message or ""
        if self.doc is not None and self.exists and self.doc.squash_error != message:
            self._set(squash_error=message)

    # Helpers.

    def _writable_doc(self, origin: Origin | None) -> Document:
        self.check_writable()
        assert self.doc is not None  # lock() inserted the row in readwrite mode
        if not self.exists:
            self.exists = True
            self._set(owner=self._user(origin.user_id if origin else None), latest_clock=0)
        return self.doc

    def _get_snapshot(self) -> Any:
        # Decoded once: a sync reads the record again after storing a snapshot.
        if not self._snapshot_loaded:
            snapshot = self.doc.get_snapshot() if self.doc is not None else None
            self._snapshot, self._snapshot_loaded = snapshot, True
        return self._snapshot

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self.doc, name, value)
            self.dirty.add(name)

    def _user(self, user_id: str | None) -> Any:
        """The user whose pk is ``user_id``, or ``None`` (unknown or malformed)."""
        if user_id is None:
            return None
        if user_id not in self._users:
            pk = user_pk(user_id)
            user = None
            if pk is not None:
                users = get_user_model()._default_manager.db_manager(self.using).filter(pk=pk)
                user = users.only("pk").first()
            self._users[user_id] = user
        return self._users[user_id]


def _batch_record(row: tuple[Any, ...]) -> BatchRecord:
    clock, fmt, data, user_id, device_id, client_id, created_at = row
    user = None if user_id is None else str(user_id)
    origin = Origin(user, device_id or None, client_id or None)
    return BatchRecord(clock, decode_operations(fmt, data), origin, created_at)


def _version_record(row: DocumentVersion, with_snapshot: bool) -> VersionRecord:
    user = None if row.user_id is None else str(row.user_id)
    origin = Origin(user, row.device_id or None, row.client_id or None)
    snapshot = decode_snapshot(row.snapshot_format, row.snapshot) if with_snapshot else None
    return VersionRecord(row.clock, row.kind, origin, row.created_at, row.restored_from, snapshot)


# The columns the squash copies from the log to history, the same in both.
_COLUMNS = (
    "document",
    "clock",
    "operations",
    "operations_format",
    "user",
    "device_id",
    "client_id",
    "created_at",
)


def _archive_sql(connection: Any) -> str:
    """``INSERT INTO history ... SELECT ... FROM log`` for one document, up to a clock."""
    quote = connection.ops.quote_name
    log, history = OperationBatch._meta, HistoryBatch._meta

    def column(meta: Any, name: str) -> str:
        return str(quote(meta.get_field(name).column))

    source = ", ".join(column(log, name) for name in _COLUMNS)
    target = ", ".join(column(history, name) for name in _COLUMNS)
    document, clock = column(log, "document"), column(log, "clock")
    return (
        f"INSERT INTO {quote(history.db_table)} ({target}) SELECT {source} "
        f"FROM {quote(log.db_table)} WHERE {document} = %s AND {clock} <= %s"
    )


class ORMProvider(BaseProvider):
    """Keeps documents in Django's database.

    Options: ``using``, the database alias (default ``"default"``).
    """

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - {"using"})
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown ORMProvider options: {', '.join(map(repr, unknown))}. "
                "The only option is 'using' (a database alias)."
            )
        super().__init__(**options)
        self.using: str = options.get("using", "default")

    @contextmanager
    def transaction(
        self, mode: Mode, doc_id: str, *, doc_type: str | None = None
    ) -> Iterator[ORMTransaction]:
        tx = ORMTransaction(doc_id, mode, doc_type, self.using)
        try:
            with transaction.atomic(using=self.using):
                tx.lock()
                yield tx
                tx.flush()
                if tx.dirty & {"latest_clock", "deleted_at"}:
                    changes.note(self.using, doc_id)  # for webhooks; once committed
        except DatabaseError as exc:
            if connection_lost(exc):
                raise StorageUnavailable() from exc  # logged once by docsync.outage
            logger.exception("Database error on document %r", doc_id)
            raise StorageError() from exc

    def document_for_permissions(self, doc_id: str) -> Document | None:
        """The ``Document`` row (without its snapshot), or ``None``."""
        fields = ("pk", "doc_id", "owner_id", "snapshot_format", "deleted_at", "latest_clock")
        docs = Document.objects.using(self.using).only(*fields)
        return docs.filter(doc_id=doc_id).first()

    def tombstones(self, older_than: timedelta) -> QuerySet[Document]:
        """Documents deleted more than ``older_than`` ago."""
        cutoff = timezone.now() - older_than
        return Document.objects.using(self.using).filter(deleted_at__lt=cutoff)

    def purge_tombstones(self, older_than: timedelta) -> int:
        """Delete tombstones deleted more than ``older_than`` ago; return how many.

        A purged document id can be used again: a client that still holds a
        copy of it would bring it back.
        """
        deleted = self.tombstones(older_than).delete()[1]
        return deleted.get(Document._meta.label, 0)

    def __repr__(self) -> str:
        return f"ORMProvider(using={self.using!r})"


def is_sqlite_without_immediate(using: str) -> bool:
    """True when ``using`` is SQLite not in ``IMMEDIATE`` transaction mode."""
    config = connections.settings[using]
    if not config["ENGINE"].endswith("sqlite3"):
        return False
    mode = (config.get("OPTIONS") or {}).get("transaction_mode") or ""
    return mode.upper() not in ("IMMEDIATE", "EXCLUSIVE")
