"""``InMemoryProvider``: documents in a dict, for tests and quick experiments.

Nothing survives a restart and nothing is shared between processes. Each
transaction holds the document's lock and works on a copy of its state,
which replaces the stored one only when the block exits without an error, so
a failed request leaves the document exactly as it was. The copy shares the
stored lists until it changes one (copy on write); a batch appended to the
log goes into the stored list itself, and is taken out again if the block
fails (every transaction of a document holds its lock, so nothing else sees
the stored list meanwhile): a write costs the same however long the log. A readonly
transaction reads the stored state itself (nothing to copy), and never
waits for more than another transaction's few statements: pulls take no
lock of the server's (``unlocked_reads``).
"""

from __future__ import annotations

import bisect
import threading
from contextlib import AbstractContextManager
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

    def shallow_copy(self) -> _StoredDoc:
        """A copy sharing this one's lists and dict (copy them before changing them)."""
        return _StoredDoc(
            self.doc_type,
            self.serialized_doc,
            self.clock,
            self.latest_clock,
            self.deleted,
            self.owner_id,
            self.batches,
            self.commits,
            self.history,
            self.versions,
        )


class InMemoryTransaction(ProviderTransaction):
    def __init__(self, doc_id: str, mode: Mode, doc_type: str | None, doc: _StoredDoc | None):
        super().__init__(doc_id, mode, doc_type)
        # Readonly: nothing changes it, and the lock keeps writers out meanwhile.
        self.doc = doc.shallow_copy() if doc is not None and mode != "readonly" else doc
        self.changed = False
        # The stored state and its log's length (what a failed block restores).
        self.stored = doc
        self.stored_batches = len(doc.batches) if doc is not None else 0
        # The containers of the stored state this copy made its own.
        self._owned: set[str] = set()

    def _own(self, name: str) -> Any:
        """The ``name`` list or dict of the copy, copied first if still the stored one's."""
        doc = self.doc
        assert doc is not None
        value = getattr(doc, name)
        if name not in self._owned:
            self._owned.add(name)
            if self.stored is not None and value is getattr(self.stored, name):
                value = type(value)(value)
                setattr(doc, name, value)
        return value

    def rollback(self) -> None:
        """The block failed: take out what was appended to the stored log."""
        if self.stored is not None:
            del self.stored.batches[self.stored_batches :]

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
        # Into the stored list itself while the copy shares it (see rollback).
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
        self._own("history").extend(b for b in doc.batches if b.clock <= up_to_clock)
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
        self._writable_doc(None)
        now = datetime.now(UTC)
        version = VersionRecord(clock, kind, origin or Origin(), now, restored_from, serialized_doc)
        versions = self._own("versions")
        versions.insert(bisect.bisect_right(versions, clock, key=_clock), version)

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
        self._writable_doc(None)
        self._own("commits")[client_id] = commit

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
        lock = self._locks.get(doc_id)
        if lock is not None:
            return lock
        with self._guard:
            return self._locks.setdefault(doc_id, threading.Lock())

    def transaction(  # type: ignore[override]  # a context manager, not a generator's
        self, mode: Mode, doc_id: str, *, doc_type: str | None = None
    ) -> AbstractContextManager[InMemoryTransaction]:
        return _Transaction(self, mode, doc_id, doc_type)


class _Transaction:
    """``InMemoryProvider.transaction``: hold the document's lock, keep the
    copy if the block succeeds, restore the stored log if it fails."""

    __slots__ = ("provider", "mode", "doc_id", "doc_type", "lock", "tx")

    def __init__(
        self, provider: InMemoryProvider, mode: Mode, doc_id: str, doc_type: str | None
    ) -> None:
        self.provider, self.mode, self.doc_id, self.doc_type = provider, mode, doc_id, doc_type

    def __enter__(self) -> InMemoryTransaction:
        provider, doc_id = self.provider, self.doc_id
        self.lock = lock = provider._lock_for(doc_id)
        lock.acquire()
        try:
            self.tx = InMemoryTransaction(
                doc_id, self.mode, self.doc_type, provider._docs.get(doc_id)
            )
        except BaseException:
            lock.release()
            raise
        return self.tx

    def __exit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        tx = self.tx
        try:
            if kind is not None:
                if tx.changed:
                    tx.rollback()
            elif tx.changed and tx.doc is not None:
                self.provider._docs[self.doc_id] = tx.doc
        finally:
            self.lock.release()
