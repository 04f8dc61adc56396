"""The provider contract: where a document's snapshot and operation log live.

A provider hands out one *transaction* per request, bound to one document.
Everything the server does for a request (read the snapshot, read the log,
append a batch, store a snapshot, squash, delete) happens inside that one
transaction, in one database hop, so the contract fits a database with row
locks: a provider locks the document when the transaction begins and releases
it when it ends. Two transactions on the same document never interleave, in
either mode, on any process; that is what keeps clocks gap-free and reads
consistent.

All methods are synchronous: the server calls them inside
``database_sync_to_async``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..identity import Origin

__all__ = ["Origin"]  # re-exported: providers take it with every write

Mode = Literal["readonly", "readwrite"]


@dataclass(frozen=True)
class DocRecord:
    """What a provider knows about one document.

    ``serialized_doc`` is the snapshot (``None`` when none is stored yet) and
    ``clock`` the clock folded into it (0 when none). ``latest_clock`` is the
    newest clock the document has, in its snapshot or its log: since clocks
    are gap-free, ``latest_clock - clock`` batches are waiting to be squashed.
    ``deleted`` marks a tombstone: the document was deleted and must never be
    brought back.
    """

    doc_id: str
    doc_type: str
    serialized_doc: Any
    clock: int
    latest_clock: int
    deleted: bool = False
    owner_id: str | None = None
    #: Whether a snapshot is stored, even when ``serialized_doc`` was not
    #: loaded (``get_serialized_doc(with_snapshot=False)``).
    has_snapshot: bool = False

    def __post_init__(self) -> None:
        if self.serialized_doc is not None:
            object.__setattr__(self, "has_snapshot", True)

    @property
    def pending(self) -> int:
        """Number of batches in the log, not yet folded into the snapshot."""
        return self.latest_clock - self.clock


@dataclass(frozen=True)
class Batch:
    """One batch of operations with its place in the document's order."""

    clock: int
    operations: list[Any]


@dataclass(frozen=True)
class SyncStep:
    """What :meth:`BaseProvider.sync_step` found and did, in one step.

    ``record`` is the document as it was before this sync wrote (``None``
    when it did not exist); ``batches`` are the ones the client lacks,
    oldest first, and ``snapshot`` the snapshot it gets (or ``None``);
    ``clock`` is the clock of the written batch, or the latest one. With
    ``refused``, nothing was written: ``record`` fails a check of
    :func:`docsync.sync.sync_document`, which raises its error.
    """

    record: DocRecord | None
    clock: int
    batches: list[Batch] = field(default_factory=list)
    snapshot: Any = None
    refused: bool = False
    #: Refused because the grant the write was allowed by no longer holds.
    lapsed: bool = False


@dataclass(frozen=True)
class ClientCommit:
    """The operations a client last stored in a document, to recognize a resend.

    ``clocks`` are the batches they went into, oldest first: one, or more when
    resends of an unacknowledged sync brought operations added meanwhile.
    ``count`` is how many operations that was (a prefix of the client's next
    request if it resends) and ``digest`` their :func:`operations_digest`.
    See ``docsync.sync`` for the rule.
    """

    clocks: tuple[int, ...]
    count: int
    digest: str


@dataclass(frozen=True)
class BatchRecord:
    """One batch as history shows it: its operations, who sent it and when.

    ``created_at`` is when the batch was stored (``None`` if the provider
    does not know).
    """

    clock: int
    operations: list[Any]
    origin: Origin
    created_at: datetime | None = None


@dataclass(frozen=True)
class VersionRecord:
    """A document's whole state at ``clock``, kept as history.

    ``kind`` says what made it: ``"squash"`` (the log folded into the
    snapshot), ``"restore"`` (the state of clock ``restored_from`` stored
    again as a new change, by ``origin``) or ``"snapshot"`` (the first
    snapshot a client sent). ``serialized_doc`` is loaded only when asked for
    (``get_versions(with_snapshot=True)``).
    """

    clock: int
    kind: str
    origin: Origin
    created_at: datetime | None = None
    restored_from: int | None = None
    serialized_doc: Any = None


_BINARY = (bytes, bytearray, memoryview)


def operations_digest(operations: list[Any], prefix: int | None = None) -> tuple[str, str]:
    """The SHA-256 digests of ``operations[:prefix]`` and of all of ``operations``.

    Each value counts as its JSON text (or its bytes), length-framed, so two
    lists have one digest only if they hold the same values in the same order.
    """
    digest = hashlib.sha256()
    head = digest.hexdigest() if prefix == 0 else ""
    for n, value in enumerate(operations, 1):
        data = _framed(value)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
        if n == prefix:
            head = digest.hexdigest()
    return head, digest.hexdigest()


def prefix_digests(operations: list[Any]) -> list[str]:
    """The digest of each prefix of ``operations`` (1, 2, ... all of them), as
    :func:`operations_digest` computes it."""
    digest, digests = hashlib.sha256(), []
    for value in operations:
        data = _framed(value)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
        digests.append(digest.hexdigest())
    return digests


def _framed(value: Any) -> bytes:
    if isinstance(value, _BINARY):
        return b"b" + bytes(value)
    text = _framed_json(value)
    return b"j" + text.encode("utf-8", "surrogatepass")


def _hex(value: Any) -> Any:
    if isinstance(value, _BINARY):
        return {"$bytes": bytes(value).hex()}
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# What json.dumps(ensure_ascii=False, separators=(",", ":"), default=_hex)
# writes, without building an encoder for every value.
_framed_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_hex).encode


class ProviderTransaction:
    """One transaction on one document; see the module docstring."""

    def __init__(self, doc_id: str, mode: Mode, doc_type: str | None) -> None:
        self.doc_id = doc_id
        self.mode = mode
        self.doc_type = doc_type

    def get_serialized_doc(self, with_snapshot: bool = True) -> DocRecord | None:
        """Return the document's record, or ``None`` if it never existed.

        A deleted document returns its tombstone (``deleted=True``). With
        ``with_snapshot=False`` a provider may skip reading the snapshot
        (``serialized_doc`` is then ``None`` but ``has_snapshot`` tells
        whether one exists): a sync needs the clocks on every request and
        the snapshot only when it sends it.
        """
        raise NotImplementedError(".get_serialized_doc() must be implemented.")

    def get_operations(self, after_clock: int, up_to_clock: int | None = None) -> list[Batch]:
        """Return the batches with ``after_clock < clock <= up_to_clock``.

        Oldest first; ``up_to_clock=None`` means no upper bound.
        """
        raise NotImplementedError(".get_operations() must be implemented.")

    def save_operations(self, operations: list[Any], origin: Origin) -> int:
        """Append ``operations`` as one batch and return its new clock.

        The clock is ``latest_clock + 1``; the document is created (of
        ``self.doc_type``, owned by ``origin.user_id``) if it does not exist.
        Only in ``readwrite`` mode.
        """
        raise NotImplementedError(".save_operations() must be implemented.")

    def save_serialized_doc(
        self, serialized_doc: Any, clock: int, origin: Origin | None = None
    ) -> None:
        """Store ``serialized_doc`` as the snapshot with ``clock`` folded into it.

        Creates the document if it does not exist; ``latest_clock`` becomes at
        least ``clock``. Only in ``readwrite`` mode.
        """
        raise NotImplementedError(".save_serialized_doc() must be implemented.")

    def delete_operations(self, up_to_clock: int) -> int:
        """Delete the batches with ``clock <= up_to_clock``; return how many.

        Only in ``readwrite`` mode.
        """
        raise NotImplementedError(".delete_operations() must be implemented.")

    def delete_doc(self) -> bool:
        """Delete the snapshot, the log, the history and the client commits; leave a tombstone.

        Return ``False`` if the document did not exist or was already deleted.
        Only in ``readwrite`` mode.
        """
        raise NotImplementedError(".delete_doc() must be implemented.")

    def get_client_commit(self, client_id: str) -> ClientCommit | None:
        """Return what :meth:`save_client_commit` last stored for ``client_id``.

        ``None`` when nothing was stored for that client in this document (or
        the document was deleted since).
        """
        raise NotImplementedError(".get_client_commit() must be implemented.")

    def save_client_commit(self, client_id: str, commit: ClientCommit) -> None:
        """Remember ``commit`` as ``client_id``'s last stored operations.

        It replaces what was stored for that client and document (one record
        per client and document); ``delete_doc`` forgets them all. Squashing
        keeps them. Only in ``readwrite`` mode, after the document exists.
        """
        raise NotImplementedError(".save_client_commit() must be implemented.")

    # History (docsync.history). A provider that keeps none inherits these
    # defaults: squashing then deletes what it folds, and reading history
    # raises NotImplementedError.

    def archive_operations(self, up_to_clock: int) -> int:
        """Move the batches with ``clock <= up_to_clock`` from the log to history.

        They leave the log (``get_operations`` no longer returns them) and
        stay readable, with their origin and time, through
        :meth:`get_history`; return how many moved. The default deletes them
        (:meth:`delete_operations`): a provider without history. Only in
        ``readwrite`` mode.
        """
        return self.delete_operations(up_to_clock)

    def save_version(
        self,
        serialized_doc: Any,
        clock: int,
        *,
        kind: str,
        origin: Origin | None = None,
        restored_from: int | None = None,
    ) -> None:
        """Keep ``serialized_doc`` as the document's state at ``clock`` (a version).

        ``kind`` and ``restored_from`` are as in :class:`VersionRecord`. It
        does not change the snapshot or the clocks. The default keeps
        nothing. Only in ``readwrite`` mode, after the document exists.
        """

    def get_history(
        self,
        after_clock: int = 0,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[BatchRecord]:
        """The batches with ``after_clock < clock <= up_to_clock``, in history or the log.

        Oldest first (newest first with ``newest_first``), at most ``limit``
        of them (from that end). Pruned batches are gone.
        """
        raise NotImplementedError(
            f"{type(self).__name__} keeps no history: .get_history() is not implemented."
        )

    def get_versions(
        self,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        with_snapshot: bool = False,
    ) -> list[VersionRecord]:
        """The versions with ``clock <= up_to_clock``, newest first, at most ``limit``."""
        raise NotImplementedError(
            f"{type(self).__name__} keeps no history: .get_versions() is not implemented."
        )

    def prune_history(self, before_clock: int) -> tuple[int, int]:
        """Forget history older than the version at ``before_clock``.

        Deletes the versions with ``clock < before_clock`` and the batches in
        history with ``clock <= before_clock`` (the log is untouched); returns
        ``(versions, batches)`` deleted. Only in ``readwrite`` mode.
        """
        raise NotImplementedError(
            f"{type(self).__name__} keeps no history: .prune_history() is not implemented."
        )

    def record_squash_failure(self, message: str | None) -> None:
        """Remember why the last squash failed (``None`` clears it).

        Optional: providers with an admin show it there. The default does
        nothing. Only in ``readwrite`` mode.
        """

    def check_writable(self) -> None:
        if self.mode != "readwrite":
            raise RuntimeError(f"Cannot write document {self.doc_id!r} in a readonly transaction.")


class BaseProvider:
    """Storage for documents. Subclasses implement :meth:`transaction`."""

    #: Whether transactions may block (database I/O): they then run in a
    #: thread (``database_sync_to_async``); a provider that never blocks may
    #: set this to False and run on the event loop.
    blocking = True
    #: Whether a sync without operations reads a consistent snapshot without
    #: taking the document's lock (``sync_step``): the server then lets such
    #: pulls run beside the writes of the same document.
    unlocked_reads = False
    #: Whether writes are atomic in the database (one statement under the
    #: row lock) and the provider has ``async def sync_write(req, origin, *,
    #: owner=None, grant=None)``, :meth:`sync_step` of a write from the event
    #: loop: the server then lets writes of one document run concurrently.
    atomic_writes = False
    #: The grants (``docsync.grants``) a write may be allowed by that
    #: :meth:`sync_step` checks in its own transaction: ``"owner"`` (with
    #: ``owner``, every provider), ``"share"`` and ``"open"`` (with ``grant``).
    #: The server remembers no other grant for writes.
    verified_grants: frozenset[str] = frozenset({"owner"})

    def __init__(self, **options: Any) -> None:
        self.options = options

    def sync_step(
        self,
        req: Any,
        origin: Origin,
        *,
        expect_new: bool = False,
        owner: str | None = None,
        grant: tuple[str, str] | None = None,
    ) -> SyncStep | None:
        """Optional: answer the sync request ``req`` in one step, or return ``None``.

        A provider that can lock, read, append and advance the clock at once
        (``PostgresProvider``: one statement) does all of
        :func:`docsync.sync.sync_document` here, with the same outcome, and
        returns ``None`` for any case it leaves to :meth:`transaction`
        (before writing anything). With ``owner``, a sync of a document that
        does not exist or whose ``owner_id`` is not ``owner`` is refused.
        With ``grant`` (one of :attr:`verified_grants` other than ``"owner"``,
        and the user's pk), a write that grant no longer allows is refused
        with ``lapsed`` set; a provider that cannot check it returns ``None``.
        A first snapshot is always left to :meth:`transaction` (return
        ``None``): that is where the binding checks it before it is stored.
        Resends too (``docsync.sync``): a write whose client has a commit in
        the document with a first clock newer than ``req.clock`` (and whose
        operations may begin with that commit's) is left to
        :meth:`transaction`, and every write saves the client's commit as
        :meth:`ProviderTransaction.save_client_commit` would
        (``ClientCommit((clock,), len(req.operations),
        operations_digest(req.operations)[1])``). The default always returns
        ``None``.
        """
        return None

    @contextmanager
    def transaction(
        self, mode: Mode, doc_id: str, *, doc_type: str | None = None
    ) -> Iterator[ProviderTransaction]:
        """Open a transaction on ``doc_id``, locked until the block ends.

        Everything written inside is committed when the block exits normally
        and rolled back if it raises. ``doc_type`` is used when a write
        creates the document.
        """
        raise NotImplementedError(".transaction() must be implemented.")
        yield  # pragma: no cover

    def document_for_permissions(self, doc_id: str) -> Any | None:
        """The ``docsync.models.Document`` that permission backends judge, or ``None``.

        The server reads it once per authorized request (when the authorize
        in use says it wants one: ``loads_document``) and hands it to
        ``authorize`` as ``event["document"]``. Providers without ``Document``
        rows give an unsaved one with the owner, which is all a backend can
        go by.
        """
        from ..models import Document

        with self.transaction("readonly", doc_id) as tx:
            record = tx.get_serialized_doc(with_snapshot=False)
        if record is None:
            return None
        document = Document(doc_id=doc_id, doc_type=record.doc_type, owner_id=record.owner_id)
        setattr(document, "_has_snapshot", record.has_snapshot)  # noqa: B010  (not a field)
        return document
