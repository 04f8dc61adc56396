"""Squashing: fold a document's operation log into its snapshot.

Provider-agnostic and safe under concurrent syncs: the log is read in one
short transaction, folded by the document type's binding with no lock held,
and written back in a second transaction that stores the snapshot with the
folded clock (also kept as a version) and moves only the batches at or below
it from the log to history (``docsync.history``). A batch appended
while the binding worked has a larger clock and stays in the log. If another
squash got there first, this one gives up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .bindings.base import BindingRegistry
from .providers.base import BaseProvider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SquashResult:
    """What a squash did: the clock folded into the snapshot and batches removed."""

    doc_id: str
    clock: int
    batches: int


def squash_document(
    provider: BaseProvider, registry: BindingRegistry, doc_id: str
) -> SquashResult | None:
    """Squash ``doc_id`` now; return ``None`` when there was nothing to do.

    Raises whatever the binding raises, after recording the failure with the
    provider; the document is left exactly as it was.
    """
    with provider.transaction("readonly", doc_id) as tx:
        record = tx.get_serialized_doc()
        if record is None or record.deleted or record.pending <= 0:
            return None
        binding = registry.get(record.doc_type)
        if binding is None:
            return None
        batches = tx.get_operations(record.clock, record.latest_clock)
    operations = [value for batch in batches for value in batch.operations]
    try:
        snapshot = binding.squash(
            record.serialized_doc,
            operations,
            doc_type=record.doc_type,
            doc_id=doc_id,
        )
    except Exception as exc:
        with provider.transaction("readwrite", doc_id) as tx:
            tx.record_squash_failure(f"{exc.__class__.__name__}: {exc}")
        raise
    with provider.transaction("readwrite", doc_id) as tx:
        current = tx.get_serialized_doc(with_snapshot=False)
        if current is None or current.deleted or current.clock != record.clock:
            return None  # deleted or squashed by someone else meanwhile
        tx.save_serialized_doc(snapshot, record.latest_clock)
        tx.save_version(snapshot, record.latest_clock, kind="squash")
        removed = tx.archive_operations(record.latest_clock)
        tx.record_squash_failure(None)
    return SquashResult(doc_id, record.latest_clock, removed)
