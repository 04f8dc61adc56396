"""The last batches of busy documents, kept in memory to answer pulls.

After a write to a busy document every subscriber pulls it at once. A
:class:`Tails` keeps, per document this process is working on, the log's
newest batches as the database last gave them (``PostgresProvider``'s
writes and reads: every answer of the database extends it), so those pulls
are answered here, without the database and without a thread.

It stays exact:

* A tail is a gap-free run of batches ``(start, latest]`` and the document's
  record (type, snapshot clock, owner) as the database gave them with
  ``latest``. A pull is answered from it only if its clock is within the run
  and the answer needs no snapshot the tail does not hold; anything else
  reads the database, whose answer then replaces or extends the tail.
* Writes of this process extend it after their commit, before their ack.
  Writes of other processes are heard of through ``dirty``, which carries
  the new clock (:meth:`heard`): a clock past ``latest`` makes the tail stale,
  so the next pull reads the database. A ``dirty`` without a clock (a write
  made elsewhere, an older process) drops the tail.
* Whatever else changes a document here (a first snapshot, a resend, a
  squash, a delete, a restore: the provider's transactions) drops its tail
  first and when it is done.
* A tail the database has not confirmed for ``ttl`` seconds is not used, so
  a ``dirty`` lost on the way (the channel layer down) delays a pull by at
  most that long, as it would delay the ``dirty`` itself.

Bounded: at most ``max_docs`` documents (least recently used go first, and
those not confirmed for ``ttl`` as soon as another document is learned) and
``max_batches`` batches each (the oldest go first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .base import Batch, DocRecord, SyncStep


@dataclass(slots=True)
class _Tail:
    record: DocRecord  # as of ``latest``
    start: int  # the batches are those with clocks in (start, latest]
    latest: int
    batches: list[Batch] = field(default_factory=list)
    confirmed: float = 0.0  # time.monotonic() of the database's last word
    heard: int = 0  # the newest clock heard of (dirty): past ``latest``, stale


class Tails:
    """Per document, the newest batches of its log (see the module docstring)."""

    def __init__(self, max_docs: int = 1000, max_batches: int = 256, ttl: float = 1.0) -> None:
        self.max_docs = max_docs
        self.max_batches = max_batches
        self.ttl = ttl
        self._lock = threading.Lock()
        self._tails: OrderedDict[str, _Tail] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tails)

    # -- what the database said -------------------------------------------------

    def learned(
        self,
        doc_id: str,
        record: DocRecord,
        base: int,
        batches: list[Batch],
        own: Batch | None = None,
    ) -> None:
        """The database answered a sync of ``doc_id``: ``batches`` are all of ``(base, latest]``.

        ``record`` is the document before this sync's own batch (``own``,
        a write's: then ``latest`` is its clock), ``batches`` in clock order.
        """
        latest = own.clock if own is not None else record.latest_clock
        base = min(base, record.latest_clock)  # a client ahead of the document: nothing missed
        run = [*batches, own] if own is not None else list(batches)
        if not _gap_free(run, base, latest):
            self.drop(doc_id)
            return
        if own is not None:
            record = _advanced(record, latest)
        now = time.monotonic()
        with self._lock:
            tail = self._tails.get(doc_id)
            if tail is not None and tail.start <= base <= tail.latest and latest >= tail.latest:
                # The batches are gap-free from start + 1: base's is at base - start - 1.
                del tail.batches[base - tail.start :]
                tail.batches.extend(run)
                tail.latest, tail.record = latest, record
            elif tail is None or latest >= tail.latest:
                tail = _Tail(record=record, start=base, latest=latest, batches=run)
                self._tails[doc_id] = tail
            else:
                return  # an older answer than what we hold (it came back later)
            tail.confirmed = now
            if len(tail.batches) > self.max_batches:
                cut = len(tail.batches) - self.max_batches
                tail.start = tail.batches[cut - 1].clock
                del tail.batches[:cut]
            self._tails.move_to_end(doc_id)
            while len(self._tails) > self.max_docs:
                self._tails.popitem(last=False)
            # Tails no longer confirmed are of no use: the oldest go first.
            while now - next(iter(self._tails.values())).confirmed > self.ttl:
                self._tails.popitem(last=False)  # never the one just learned

    def heard(self, doc_id: str, clock: int | None) -> None:
        """``dirty``: ``doc_id`` reached ``clock`` (``None``: unknown, drop the tail)."""
        with self._lock:
            tail = self._tails.get(doc_id)
            if tail is None:
                return
            if clock is None:
                del self._tails[doc_id]
            elif clock > tail.heard:
                tail.heard = clock

    def drop(self, doc_id: str) -> None:
        """Forget ``doc_id``'s tail (something other than a sync changes it)."""
        with self._lock:
            self._tails.pop(doc_id, None)

    def after(self, doc_id: str, clock: int) -> list[Batch]:
        """The batches after ``clock`` held for ``doc_id`` (gap-free from ``clock + 1``).

        For a write: the database need not read them again. Empty unless the
        tail covers ``clock`` and the database confirmed it within ``ttl``.
        Batches never change once committed; what would change them (a
        squash, a restore) drops the tail.
        """
        with self._lock:
            tail = self._tails.get(doc_id)
            if tail is None or not tail.start <= clock < tail.latest:
                return []
            if time.monotonic() - tail.confirmed > self.ttl:
                return []
            return tail.batches[clock - tail.start :]

    # -- answering a pull --------------------------------------------------------

    def pull(self, doc_id: str, doc_type: str, clock: int, has_doc: bool) -> SyncStep | None:
        """The answer to a pull from ``clock``, or ``None``: ask the database."""
        with self._lock:
            tail = self._tails.get(doc_id)
            if tail is None or tail.heard > tail.latest:
                return None
            if time.monotonic() - tail.confirmed > self.ttl:
                return None
            record = tail.record
            if record.deleted or (record.doc_type and record.doc_type != doc_type):
                return None  # the database gives the error
            if record.has_snapshot and not (has_doc and clock >= record.clock):
                return None  # the answer carries the snapshot: not kept here
            if has_doc and not record.has_snapshot:
                return None  # the client's first snapshot is stored: a write
            if clock >= tail.latest:
                return SyncStep(record=record, clock=tail.latest)
            if clock < tail.start:
                return None
            batches = [b for b in tail.batches if b.clock > clock]
            self._tails.move_to_end(doc_id)
            return SyncStep(record=record, clock=tail.latest, batches=batches)


def _gap_free(run: list[Batch], base: int, latest: int) -> bool:
    """Whether ``run`` holds exactly the clocks ``base + 1 .. latest``, in order."""
    if len(run) != latest - base:
        return False
    return all(batch.clock == base + 1 + i for i, batch in enumerate(run))


def _advanced(record: DocRecord, latest: int) -> DocRecord:
    return DocRecord(
        doc_id=record.doc_id,
        doc_type=record.doc_type,
        serialized_doc=None,
        clock=record.clock,
        latest_clock=latest,
        deleted=record.deleted,
        owner_id=record.owner_id,
        has_snapshot=record.has_snapshot,
    )
