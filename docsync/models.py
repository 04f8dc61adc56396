"""Documents in the database: the tables behind ``ORMProvider``.

Storage of snapshots and operations
-----------------------------------
A snapshot, or one value of a batch's operations, is either a JSON value or
bytes (binary bindings such as Yjs), and must come back exactly as it was
stored. Both are kept in one binary column plus a short discriminator:

* ``json``: the value as JSON text, UTF-8 encoded. Python's ``json`` keeps
  dict key order, big integers, floats (``repr`` round-trips) and unicode
  (lone surrogates too, through ``surrogatepass``).
* ``bytes``: the raw bytes of a snapshot.
* ``parts``: a list of operations values holding bytes: each value is framed
  as one tag byte (``j`` JSON, ``b`` bytes), a 4-byte big-endian length, and
  the payload.

A ``JSONField`` was not used: on PostgreSQL it is ``jsonb``, which reorders
dict keys and drops duplicates, and no backend's JSON column takes bytes.
``BinaryField`` is ``bytea`` on PostgreSQL, ``longblob`` on MariaDB/MySQL and
``BLOB`` on SQLite: it stores the bytes untouched everywhere.
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from django.conf import settings
from django.db import models

BINARY_TYPES = (bytes, bytearray, memoryview)
_FRAME = struct.Struct(">cI")


class ValueFormat(models.TextChoices):
    """How a binary column's content is to be read back."""

    NONE = "", "none"
    JSON = "json", "JSON"
    BYTES = "bytes", "bytes"
    PARTS = "parts", "framed parts"


def _dump_json(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(
            f"Cannot store {type(value).__name__} value: {exc}. Documents and "
            "operations must be JSON values or bytes (bytes nested inside a "
            "JSON value are not supported)."
        ) from exc
    return text.encode("utf-8", "surrogatepass")


def _load_json(data: bytes) -> Any:
    return json.loads(bytes(data).decode("utf-8", "surrogatepass"))


def encode_snapshot(value: Any) -> tuple[str, bytes | None]:
    """Return ``(format, data)`` storing a snapshot (``None`` stays ``None``)."""
    if value is None:
        return ValueFormat.NONE, None
    if isinstance(value, BINARY_TYPES):
        return ValueFormat.BYTES, bytes(value)
    return ValueFormat.JSON, _dump_json(value)


def decode_snapshot(fmt: str, data: Any) -> Any:
    """Inverse of :func:`encode_snapshot`."""
    if data is None or fmt == ValueFormat.NONE:
        return None
    if fmt == ValueFormat.BYTES:
        return bytes(data)
    return _load_json(data)


def encode_operations(values: list[Any]) -> tuple[str, bytes]:
    """Return ``(format, data)`` storing a batch's list of operations values."""
    if not any(isinstance(value, BINARY_TYPES) for value in values):
        return ValueFormat.JSON, _dump_json(list(values))
    frames = []
    for value in values:
        if isinstance(value, BINARY_TYPES):
            tag, payload = b"b", bytes(value)
        else:
            tag, payload = b"j", _dump_json(value)
        frames.append(_FRAME.pack(tag, len(payload)) + payload)
    return ValueFormat.PARTS, b"".join(frames)


def decode_operations(fmt: str, data: Any) -> list[Any]:
    """Inverse of :func:`encode_operations`."""
    data = bytes(data)
    if fmt == ValueFormat.JSON:
        loaded: list[Any] = _load_json(data)
        return loaded
    values: list[Any] = []
    offset = 0
    while offset < len(data):
        tag, size = _FRAME.unpack_from(data, offset)
        offset += _FRAME.size
        payload = data[offset : offset + size]
        offset += size
        values.append(payload if tag == b"b" else _load_json(payload))
    return values


class DocIdField(models.CharField):  # type: ignore[type-arg]  # a plain str column
    """A ``CharField`` compared byte for byte on every backend.

    MariaDB and MySQL compare strings case-insensitively and ignoring
    trailing spaces by default, which would make ``"Doc"`` and ``"doc "`` the
    same document; there the column gets a binary, no-pad collation.
    PostgreSQL and SQLite compare exactly already.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return f"varchar({self.max_length}) CHARACTER SET utf8mb4"
        return super().db_type(connection)

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params: dict[str, Any] = super().db_parameters(connection)
        if connection.vendor == "mysql" and not getattr(self, "db_collation", None):
            mariadb = getattr(connection, "mysql_is_mariadb", True)
            params["collation"] = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
        return params


class Document(models.Model):
    """One document: its snapshot and the clocks of its log.

    ``snapshot_clock`` is the clock folded into the snapshot and
    ``latest_clock`` the newest clock ever given to a batch; the batches in
    between are the :class:`OperationBatch` rows. A deleted document keeps
    its row as a tombstone (``deleted_at`` set, no snapshot, no batches) so a
    stale client cannot bring it back.
    """

    doc_id = DocIdField("document id", max_length=255, unique=True)
    doc_type = models.CharField("type", max_length=100, blank=True)
    snapshot = models.BinaryField(null=True, editable=False)
    snapshot_format = models.CharField(
        max_length=8, choices=ValueFormat.choices, blank=True, editable=False
    )
    snapshot_clock = models.BigIntegerField(default=0, editable=False)
    latest_clock = models.BigIntegerField(default=0, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="docsync_documents",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    squash_error = models.TextField("last squash error", blank=True, default="")
    private = models.BooleanField(
        default=False,
        help_text="Only the owner and those it is shared with may open it. Set for good "
        "when the document is first shared. Matters only with DOCSYNC['OPEN_DOCUMENTS'].",
    )

    class Meta:
        verbose_name = "document"
        verbose_name_plural = "documents"

    def __str__(self) -> str:
        return str(self.doc_id)

    @property
    def pending(self) -> int:
        """Batches in the log, not yet folded into the snapshot."""
        return self.latest_clock - self.snapshot_clock

    def get_snapshot(self) -> Any:
        """The snapshot as the binding stored it (a JSON value, bytes or None)."""
        return decode_snapshot(self.snapshot_format, self.snapshot)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Document:
        doc = super().from_db(db, field_names, values)
        # The owner as loaded, so that changing it can revoke the old owner's
        # access (docsync.revocation).
        setattr(doc, "_loaded_owner_id", doc.__dict__.get("owner_id"))  # noqa: B010
        return doc


class BatchMethods:
    """What a stored batch offers, in the log and in history alike."""

    document_id: Any
    clock: int
    operations: Any
    operations_format: str

    def __str__(self) -> str:
        return f"{self.document_id}@{self.clock}"

    def get_operations(self) -> list[Any]:
        """The batch's list of operations values."""
        return decode_operations(self.operations_format, self.operations)


class OperationBatch(BatchMethods, models.Model):
    """One batch of operations a client sent, at its place in the document."""

    # No index of its own: the unique (document, clock) index starts with it
    # and also serves "batches of a document with clock > N" as a range scan.
    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="batches", db_index=False
    )
    clock = models.BigIntegerField()
    operations = models.BinaryField(editable=False)
    operations_format = models.CharField(max_length=8, choices=ValueFormat.choices, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="docsync_batches",
    )
    device_id = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "operation batch"
        verbose_name_plural = "operation batches"
        constraints = [
            models.UniqueConstraint(
                fields=["document", "clock"], name="docsync_batch_document_clock"
            )
        ]


class ClientCommit(models.Model):
    """The operations a client last stored in a document, to recognize its resend.

    One row per client id and document, replaced by each of its writes
    (``docsync.sync`` explains the rule): the batches they went into
    (``clocks``, space-separated, oldest first), how many operations and
    their digest. Squashing keeps the row; deleting the document removes it.
    """

    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="client_commits", db_index=False
    )
    client_id = DocIdField(max_length=255)
    clocks = models.TextField()
    count = models.PositiveIntegerField()
    digest = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "client commit"
        verbose_name_plural = "client commits"
        constraints = [
            models.UniqueConstraint(
                fields=["document", "client_id"], name="docsync_commit_document_client"
            )
        ]

    def __str__(self) -> str:
        return f"{self.document_id}/{self.client_id}@{self.clocks}"


class ShareRole(models.TextChoices):
    """What a share grants, each role including the ones before it."""

    VIEWER = "viewer", "viewer (read)"
    EDITOR = "editor", "editor (read, write)"
    MANAGER = "manager", "manager (read, write, delete)"


#: The permissions (codenames of ``Document``) each role grants.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ShareRole.VIEWER: frozenset({"view_document"}),
    ShareRole.EDITOR: frozenset({"view_document", "change_document"}),
    ShareRole.MANAGER: frozenset({"view_document", "change_document", "delete_document"}),
}
#: The roles whose shares allow writing.
WRITE_ROLES: frozenset[str] = frozenset(
    role for role, codenames in ROLE_PERMISSIONS.items() if "change_document" in codenames
)


class DocumentShare(models.Model):
    """Access to one document for one user or one group.

    Read by ``docsync.backends.DocumentPermissionBackend``; removing or
    downgrading a share cuts open connections off (``docsync.revocation``).
    """

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="docsync_shares",
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="docsync_shares",
    )
    role = models.CharField(max_length=16, choices=ShareRole.choices, default=ShareRole.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "share"
        verbose_name_plural = "shares"
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True)
                    | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="docsync_share_user_xor_group",
                violation_error_message="A share is for a user or for a group, not both.",
            ),
            # Plain (not partial) unique constraints: NULLs never collide, and
            # MariaDB has no partial indexes.
            models.UniqueConstraint(
                fields=["document", "user"],
                name="docsync_share_document_user",
                violation_error_message="This document is already shared with this user.",
            ),
            models.UniqueConstraint(
                fields=["document", "group"],
                name="docsync_share_document_group",
                violation_error_message="This document is already shared with this group.",
            ),
        ]

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id is not None else f"group {self.group}"
        return f"{self.document} → {who} ({self.role})"

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> DocumentShare:
        share = super().from_db(db, field_names, values)
        # Who held the share as loaded: moving it to someone else revokes them.
        loaded = (share.__dict__.get("user_id"), share.__dict__.get("group_id"))
        setattr(share, "_loaded", loaded)  # noqa: B010  (not a field)
        return share

    @property
    def permissions(self) -> frozenset[str]:
        """The ``Document`` permission codenames this share grants."""
        return ROLE_PERMISSIONS.get(self.role, frozenset())


class HistoryKind(models.TextChoices):
    """What made a version of a document."""

    SNAPSHOT = "snapshot", "first snapshot (from a client)"
    SQUASH = "squash", "squash"
    RESTORE = "restore", "restore"


class HistoryBatch(BatchMethods, models.Model):
    """A batch squashing folded into the snapshot, kept as history.

    The same columns as :class:`OperationBatch`: the squash moves its rows
    here in the transaction that stores the snapshot, so a batch is always
    in exactly one of the two tables. ``created_at`` is when the client sent
    it, not when it was moved.
    """

    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="history", db_index=False
    )
    clock = models.BigIntegerField()
    operations = models.BinaryField(editable=False)
    operations_format = models.CharField(max_length=8, choices=ValueFormat.choices, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="docsync_history",
    )
    device_id = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "history batch"
        verbose_name_plural = "history batches"
        constraints = [
            models.UniqueConstraint(
                fields=["document", "clock"], name="docsync_history_document_clock"
            )
        ]


class DocumentVersion(models.Model):
    """A document's whole state at one clock: a squash's result, a restore, a first snapshot.

    Any clock ``N`` is rebuilt from the newest version at or below ``N`` plus
    the batches after it (``docsync.history``).
    """

    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    clock = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=HistoryKind.choices)
    snapshot = models.BinaryField(null=True, editable=False)
    snapshot_format = models.CharField(
        max_length=8, choices=ValueFormat.choices, blank=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="docsync_versions",
    )
    device_id = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    #: For a restore: the clock whose state it restored.
    restored_from = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "document version"
        verbose_name_plural = "document versions"
        constraints = [
            models.UniqueConstraint(
                fields=["document", "clock"], name="docsync_version_document_clock"
            )
        ]

    def __str__(self) -> str:
        return f"{self.document_id}@{self.clock} ({self.kind})"

    def get_snapshot(self) -> Any:
        """The version's snapshot as the binding stored it."""
        return decode_snapshot(self.snapshot_format, self.snapshot)


# -- webhooks (docsync.webhooks) ---------------------------------------------
#
# WebhookDelivery is the outbox: one row per event and receiver, written in
# the transaction that decides the event. WebhookCursor remembers, per
# document, the clock and the deleted state the last event told receivers
# about: an event is due whenever the document's row (written in the same
# transaction as every change) is ahead of its cursor, so a change committed
# just before a crash still gets its event.

#: The events a webhook receiver may ask for.
WEBHOOK_EVENTS = (
    "document.changed",
    "document.deleted",
    "document.restored",
    "client.connected",
    "client.disconnected",
)


class WebhookReceiver(models.Model):
    """A receiver configured in the admin (those of ``DOCSYNC["WEBHOOKS"]`` have no row)."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2000)
    secret = models.CharField(
        max_length=200, help_text="Shared with the receiver, which checks the signature with it."
    )
    events = models.CharField(
        max_length=500,
        blank=True,
        help_text="Event types, separated by spaces or commas; empty for every event: "
        + ", ".join(WEBHOOK_EVENTS),
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "webhook receiver"
        verbose_name_plural = "webhook receivers"

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    """Where one delivery stands."""

    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"


class WebhookDelivery(models.Model):
    """One event for one receiver: the outbox row, and what became of it."""

    event_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    event_type = models.CharField(max_length=40)
    doc_id = DocIdField("document id", max_length=255, blank=True)
    #: The exact request body (JSON): the same bytes on every attempt.
    body = models.TextField()
    #: ``settings:<name>`` or ``admin:<pk>``: looked up again at each attempt.
    receiver = models.CharField(max_length=2100)
    url = models.URLField(max_length=2000, help_text="Where it went when it was written.")
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="docsync_webhook_due")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} to {self.receiver}"


class WebhookCursor(models.Model):
    """What receivers were last told about one document."""

    document = models.OneToOneField(
        Document, on_delete=models.CASCADE, primary_key=True, related_name="webhook_cursor"
    )
    clock = models.BigIntegerField(default=0)
    deleted = models.BooleanField(default=False)
    notified_at = models.DateTimeField()

    class Meta:
        verbose_name = "webhook cursor"
        verbose_name_plural = "webhook cursors"

    def __str__(self) -> str:
        return f"{self.document_id} at clock {self.clock}"
