"""``InMemoryProvider``: documents in a dict, for tests and quick experiments.

Nothing survives a restart and nothing is shared between processes. Each
transaction holds the document's lock and works on a copy of its state,
which replaces the stored one only when the block exits without an error, so
a failed request leaves the document exactly as it was. A readonly
transaction reads the stored state itself (nothing to copy), and never
waits for more than another transaction's few statements: pulls take no
lock of the server's (``unlocked_reads``).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

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


@dataclass
class _StoredDoc:
    doc_type: str
    serialized_doc: Any = None
    clock: int = 0
    latest_clock: int = 0
    deleted: bool = False
    owner_id: str | None = None
    batches: list[BatchRecord] = field(default_factory=list)
    commits: dict[str, ClientCommit] = field(default_factory=dict)
    # Batches squashing folded, and versions, both oldest first.
    history: list[BatchRecord] = field(default_factory=list)
    versions: list[VersionRecord] = field(default_factory=list)

    def copy(self) -> _StoredDoc:
        return replace(
            self,
            batches=list(self.batches),
            commits=dict(self.commits),
            history=list(self.history),
            versions=list(self.versions),
        )


class InMemoryTransaction(ProviderTransaction):
    def __init__(self, doc_id: str, mode: Mode, doc_type: str | None, doc: _StoredDoc | None):
        super().__init__(doc_id, mode, doc_type)
        # Readonly: nothing changes it, and the lock keeps writers out meanwhile.
        self.doc = doc.copy() if doc is not None and mode != "readonly" else doc
        self.changed = False

    def get_serialized_doc(self, with_snapshot: bool = True) -> DocRecord | None:
        doc = self.doc
        if doc is None:
            return None
        return DocRecord(
            doc_id=self.doc_id,
            doc_type=doc.doc_type,
            serialized_doc=doc.serialized_doc,
            clock=doc.clock,
            latest_clock=doc.latest_clock,
            deleted=doc.deleted,
            owner_id=doc.owner_id,
        )

    def get_operations(self, after_clock: int, up_to_clock: int | None = None) -> list[Batch]:
        if self.doc is None:
            return []
        return [
            Batch(b.clock, b.operations)
            for b in _between(self.doc.batches, after_clock, up_to_clock)
        ]

    def _writable_doc(self, origin: Origin | None) -> _StoredDoc:
        self.check_writable()
        if self.doc is None:
            self.doc = _StoredDoc(
                doc_type=self.doc_type or "", owner_id=origin.user_id if origin else None
            )
        self.changed = True
        return self.doc

    def save_operations(self, operations: list[Any], origin: Origin) -> int:
        doc = self._writable_doc(origin)
        doc.latest_clock += 1
        now = datetime.now(UTC)
        # Only who sent it (an Identity also holds the user object).
        who = Origin(origin.user_id, origin.device_id, origin.client_id)
        doc.batches.append(BatchRecord(doc.latest_clock, list(operations), who, now))
        return doc.latest_clock

    def save_serialized_doc(
        self, serialized_doc: Any, clock: int, origin: Origin | None = None
    ) -> None:
        doc = self._writable_doc(origin)
        doc.serialized_doc = serialized_doc
        doc.clock = clock
        doc.latest_clock = max(doc.latest_clock, clock)

    def delete_operations(self, up_to_clock: int) -> int:
        doc = self._writable_doc(None)
        before = len(doc.batches)
        doc.batches = [b for b in doc.batches if b.clock > up_to_clock]
        return before - len(doc.batches)

    def archive_operations(self, up_to_clock: int) -> int:
        doc = self._writable_doc(None)
        doc.history.extend(b for b in doc.batches if b.clock <= up_to_clock)
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
        doc = self._writable_doc(None)
        now = datetime.now(UTC)
        version = VersionRecord(clock, kind, origin or Origin(), now, restored_from, serialized_doc)
        doc.versions.insert(bisect.bisect_right(doc.versions, clock, key=_clock), version)

    def get_history(
        self,
        after_clock: int = 0,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[BatchRecord]:
        if self.doc is None:
            return []
        found = _between(self.doc.history, after_clock, up_to_clock)
        found += _between(self.doc.batches, after_clock, up_to_clock)
        if newest_first:
            found.reverse()
        return found[:limit]

    def get_versions(
        self,
        up_to_clock: int | None = None,
        *,
        limit: int | None = None,
        with_snapshot: bool = False,
    ) -> list[VersionRecord]:
        if self.doc is None:
            return []
        found = _between(self.doc.versions, -1, up_to_clock)[::-1][:limit]
        return found if with_snapshot else [replace(v, serialized_doc=None) for v in found]

    def prune_history(self, before_clock: int) -> tuple[int, int]:
        doc = self._writable_doc(None)
        versions, batches = len(doc.versions), len(doc.history)
        doc.versions = [v for v in doc.versions if v.clock >= before_clock]
        doc.history = [b for b in doc.history if b.clock > before_clock]
        return versions - len(doc.versions), batches - len(doc.history)

    def get_client_commit(self, client_id: str) -> ClientCommit | None:
        return None if self.doc is None else self.doc.commits.get(client_id)

    def save_client_commit(self, client_id: str, commit: ClientCommit) -> None:
        self._writable_doc(None).commits[client_id] = commit

    def delete_doc(self) -> bool:
        if self.doc is None or self.doc.deleted:
            return False
        doc = self._writable_doc(None)
        doc.serialized_doc = None
        doc.batches, doc.history, doc.versions = [], [], []
        doc.commits = {}
        doc.deleted = True
        return True


def _clock(item: BatchRecord | VersionRecord) -> int:
    return item.clock


def _between(items: list[Any], after_clock: int, up_to_clock: int | None) -> list[Any]:
    """Those of ``items`` (sorted by clock) with ``after_clock < clock <= up_to_clock``."""
    start = bisect.bisect_right(items, after_clock, key=_clock)
    end = len(items) if up_to_clock is None else bisect.bisect_right(items, up_to_clock, key=_clock)
    return items[start:end]


class InMemoryProvider(BaseProvider):
    """Keeps every document in this process's memory."""

    blocking = False
    unlocked_reads = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._docs: dict[str, _StoredDoc] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, doc_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(doc_id, threading.Lock())

    @contextmanager
    def transaction(
        self, mode: Mode, doc_id: str, *, doc_type: str | None = None
    ) -> Iterator[InMemoryTransaction]:
        with self._lock_for(doc_id):
            tx = InMemoryTransaction(doc_id, mode, doc_type, self._docs.get(doc_id))
            yield tx
            if tx.changed and tx.doc is not None:
                self._docs[doc_id] = tx.doc
