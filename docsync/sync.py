"""The sync algorithm (PROTOCOL §4) as plain synchronous code.

It runs inside ONE database hop: the caller wraps :func:`sync_document` (and
the authorization before it) in a single ``database_sync_to_async`` call, and
everything here happens in one provider transaction holding the document's
lock, so two syncs of one document never interleave.

Exactly once across a lost ack
------------------------------
A client whose sync was committed but never acknowledged (the server died,
the connection dropped) sends the same operations again: the official client
keeps them as unconfirmed, with the clock it had, and appends what was typed
meanwhile. The server remembers, per document and ``clientId``, the
operations that client last stored (:class:`~docsync.providers.base.ClientCommit`:
the batches' clocks, how many operations, their digest). A request from
that client is a *resend* when its clock is older than the first of those
batches (so it never saw them acknowledged) and its operations begin with
those operations. A resend stores only the operations after that prefix (if
any, as a new batch); its response leaves out the batches it already stored,
as for any request's own operations, and its clock is the document's latest.
Only the last stored operations of each client are remembered, and a client
that really means to send the very same operations again, with the same
``clientId`` and an older clock, is answered as a resend. A provider's
one-step sync (``sync_step``) leaves possible resends to this code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .bindings.base import BaseBinding, BindingRegistry
from .exceptions import DocumentDeleted, InvalidValue, StorageError, ValidationError
from .payload import DEFAULT_MAX_DEPTH, check_depth
from .protocol import MAX_ATTACHMENTS, count_attachments
from .providers.base import (
    BaseProvider,
    ClientCommit,
    DocRecord,
    Mode,
    Origin,
    ProviderTransaction,
    SyncStep,
    operations_digest,
)
from .requests import SyncRequest

logger = logging.getLogger(__name__)

#: The batches a chain of resends may span (consecutive unacknowledged syncs
#: of one client that each added operations); older ones are forgotten.
MAX_COMMIT_CLOCKS = 64


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """The response of a sync, and what the server does after the ack."""

    operations: list[Any]
    serialized_doc: Any
    clock: int
    pending: int  # batches in the log after this sync (drives squashing)

    def as_wire(self, doc_id: str) -> dict[str, Any]:
        return {
            "docId": doc_id,
            "operations": self.operations,
            "serializedDoc": self.serialized_doc,
            "clock": self.clock,
        }


def sync_document(
    provider: BaseProvider,
    req: SyncRequest,
    origin: Origin,
    bindings: BindingRegistry,
    *,
    expect_new: bool = False,
    owner: str | None = None,
    grant: tuple[str, str] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> SyncOutcome:
    """Run one sync request against ``provider``; see PROTOCOL §4 steps 2–5.

    ``bindings`` (the server's registry) checks the operations before they
    are stored and lets a response that holds more binary values than a
    client accepts be merged by the document's binding (see
    :func:`fit_attachments`).
    With ``owner`` (a permission granted for being the owner), the sync raises
    :class:`OwnerChanged` before writing anything unless the document exists
    and is owned by ``owner``; with ``grant`` (``("share", pk)``, say), unless
    the provider's own step finds that the grant still holds.
    """
    binding = bindings.get(req.doc_type)
    validate_operations(binding, req)
    step = provider.sync_step(req, origin, expect_new=expect_new, owner=owner, grant=grant)
    if step is not None:
        return _outcome_of_step(step, req, bindings, expect_new, owner)
    if grant is not None:
        raise OwnerChanged(req.doc_id)  # only the provider's step can check it
    writes = bool(req.operations) or req.serialized_doc is not None
    mode: Mode = "readwrite" if writes else "readonly"
    with provider.transaction(mode, req.doc_id, doc_type=req.doc_type) as tx:
        record = tx.get_serialized_doc(with_snapshot=False)
        check_record(record, req, expect_new, owner)
        has_snapshot = record is not None and record.has_snapshot
        if not has_snapshot and req.serialized_doc is not None:
            validate_snapshot(binding, req, max_depth)
            tx.save_serialized_doc(req.serialized_doc, req.clock, origin)
            tx.save_version(req.serialized_doc, req.clock, kind="snapshot", origin=origin)
            record = tx.get_serialized_doc(with_snapshot=False)
            has_snapshot = False  # the client already has what we just stored
        if (
            record is not None
            and has_snapshot
            and (req.serialized_doc is None or record.clock > req.clock)
        ):
            full = tx.get_serialized_doc()  # the row is locked: it is still there
            snapshot, base = (full.serialized_doc if full else None), record.clock
        else:
            snapshot, base = None, req.clock
        batches = tx.get_operations(base)
        commit = _resent(tx, req, origin, record)
        if commit is not None:
            own = set(commit.clocks)
            batches = [batch for batch in batches if batch.clock not in own]
        operations = [op for batch in batches for op in batch.operations]
        if req.operations:
            clock = _store(tx, req, origin, record, commit)
        else:
            clock = record.latest_clock if record is not None else 0
    snapshot_clock = record.clock if record is not None else 0
    operations = fit_attachments(operations, snapshot, req.doc_type, bindings)
    return SyncOutcome(operations, snapshot, clock, max(clock - snapshot_clock, 0))


async def sync_write(
    provider: BaseProvider,
    req: SyncRequest,
    origin: Origin,
    bindings: BindingRegistry,
    *,
    owner: str | None = None,
    grant: tuple[str, str] | None = None,
) -> SyncOutcome | None:
    """:func:`sync_document` of a write, on the event loop, or ``None``.

    For a provider with ``atomic_writes`` (``PostgresProvider.sync_write``):
    the write joins the provider's next group commit without a thread of its
    own. ``None`` when the provider leaves the request to its transaction
    path (a first snapshot, a possible resend): run :func:`sync_document`
    then, in a database hop. Raises as :func:`sync_document` does.
    """
    validate_operations(bindings.get(req.doc_type), req)
    step = await provider.sync_write(  # type: ignore[attr-defined]
        req, origin, owner=owner, grant=grant
    )
    if step is None:
        if grant is not None:
            raise OwnerChanged(req.doc_id)  # only the provider's step can check it
        return None
    return _outcome_of_step(step, req, bindings, False, owner)


def cached_pull(
    provider: BaseProvider, req: SyncRequest, bindings: BindingRegistry
) -> SyncOutcome | None:
    """:func:`sync_document` of a pull answered from the provider's memory, or ``None``.

    For a provider that keeps busy documents' newest batches
    (``PostgresProvider.cached_pull``, ``docsync.providers.tail``); no I/O.
    """
    step = provider.cached_pull(req)  # type: ignore[attr-defined]
    if step is None:
        return None
    return _outcome_of_step(step, req, bindings, False, None)


def _resent(
    tx: ProviderTransaction, req: SyncRequest, origin: Origin, record: DocRecord | None
) -> ClientCommit | None:
    """The client's last commit if ``req`` resends it (see the module docstring)."""
    if not req.operations or not origin.client_id or record is None:
        return None
    if record.latest_clock <= req.clock:
        return None  # nothing newer than the client's clock: nothing to resend
    commit = tx.get_client_commit(origin.client_id)
    if commit is None or commit.clocks[0] <= req.clock or commit.count > len(req.operations):
        return None
    head, _ = operations_digest(req.operations[: commit.count], commit.count)
    if head != commit.digest:
        return None
    logger.info(
        "docsync: client %r resent %d operations of %r already stored (clock %s): not stored again",
        origin.client_id,
        commit.count,
        req.doc_id,
        commit.clocks[-1],
    )
    return commit


def _store(
    tx: ProviderTransaction,
    req: SyncRequest,
    origin: Origin,
    record: DocRecord | None,
    commit: ClientCommit | None,
) -> int:
    """Append the request's new operations; remember them for the client."""
    fresh = req.operations[commit.count :] if commit is not None else req.operations
    if not fresh and record is not None:
        return record.latest_clock  # a resend with nothing new: stored already
    clock = tx.save_operations(fresh, origin)
    if origin.client_id:
        _, digest = operations_digest(req.operations)
        clocks = (*commit.clocks, clock) if commit is not None else (clock,)
        tx.save_client_commit(
            origin.client_id,
            ClientCommit(clocks[-MAX_COMMIT_CLOCKS:], len(req.operations), digest),
        )
    return clock


class OwnerChanged(Exception):
    """The grant a write was allowed by no longer holds (the owner changed, say).

    Raised before anything is written; the server decides access again.
    """


def check_record(
    record: DocRecord | None, req: SyncRequest, expect_new: bool, owner: str | None = None
) -> None:
    """Raise if ``req`` may not go on with the document as ``record`` found it."""
    if owner is not None and (record is None or record.owner_id != owner):
        raise OwnerChanged(req.doc_id)
    if record is None:
        return
    if expect_new:
        raise StorageError(
            f"Document {req.doc_id!r} was created by another request meanwhile; "
            "retry (access is decided again)."
        )
    if record.deleted:
        raise DocumentDeleted(req.doc_id)
    if record.doc_type and record.doc_type != req.doc_type:
        raise ValidationError(
            f"type {req.doc_type!r} does not match document {req.doc_id!r}, "
            f"which is of type {record.doc_type!r}."
        )


def _outcome_of_step(
    step: SyncStep,
    req: SyncRequest,
    bindings: BindingRegistry,
    expect_new: bool,
    owner: str | None,
) -> SyncOutcome:
    """The outcome of a sync the provider did in one step (``sync_step``)."""
    if step.lapsed:
        raise OwnerChanged(req.doc_id)
    if step.refused:
        check_record(step.record, req, expect_new, owner)
        raise StorageError(f"Document {req.doc_id!r} refused the sync; retry.")
    operations = [op for batch in step.batches for op in batch.operations]
    operations = fit_attachments(operations, step.snapshot, req.doc_type, bindings)
    snapshot_clock = step.record.clock if step.record is not None else 0
    return SyncOutcome(operations, step.snapshot, step.clock, max(step.clock - snapshot_clock, 0))


def validate_operations(binding: BaseBinding | None, req: SyncRequest) -> None:
    """Refuse operations values the document's binding could never apply.

    Before anything is stored: a squash must be able to fold every batch of
    the log. Raises ``InvalidValue`` naming the value (``operations[2]``).
    """
    if binding is None:
        return
    for index, value in enumerate(req.operations):
        try:
            binding.validate_operations(value)
        except ValueError as exc:
            raise InvalidValue(
                ("operations", index), f"cannot be applied to a {req.doc_type!r} document: {exc}"
            ) from None


def validate_snapshot(
    binding: BaseBinding | None, req: SyncRequest, max_depth: int = DEFAULT_MAX_DEPTH
) -> None:
    """Refuse a first snapshot nested too deeply, or that the binding could not load."""
    check_depth(req.serialized_doc, max_depth, ("serializedDoc",), level=3)
    if binding is None:
        return
    try:
        binding.validate_snapshot(req.serialized_doc)
    except ValueError as exc:
        raise InvalidValue(
            ("serializedDoc",), f"is not a snapshot of a {req.doc_type!r} document: {exc}"
        ) from None


def fit_attachments(
    operations: list[Any], snapshot: Any, doc_type: str, bindings: BindingRegistry
) -> list[Any]:
    """Keep a response within the binary attachments a client accepts.

    Every bytes value (a Yjs update, say) travels as one attachment of the ack,
    and socket.io-client drops the connection on a packet with more than
    ``MAX_ATTACHMENTS`` of them: a client that missed more batches than that
    could never sync again. The binding's ``merge_operations`` (if it has one)
    then turns the operations into fewer values that mean the same.
    """
    if count_attachments(operations) + count_attachments(snapshot) <= MAX_ATTACHMENTS:
        return operations
    binding = bindings.get(doc_type)
    merge = getattr(binding, "merge_operations", None)
    merged = merge(operations) if merge is not None else operations
    if count_attachments(merged) + count_attachments(snapshot) > MAX_ATTACHMENTS:
        logger.warning(
            "docsync: a sync response of %r document carries more than %s binary values "
            "and its binding (%s) cannot merge them: socket.io-client will refuse it.",
            doc_type,
            MAX_ATTACHMENTS,
            type(binding).__name__,
        )
    return merged
