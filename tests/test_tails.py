"""``docsync.providers.tail.Tails``: pulls answered from memory, exactly or not at all."""

from __future__ import annotations

import time

from docsync.providers.base import Batch, DocRecord
from docsync.providers.tail import Tails

DOC = "doc"


def record(latest: int, *, snapshot_clock: int = 0, has_snapshot: bool = False, **extra):
    fields = {"doc_type": "list", "deleted": False, "owner_id": "1", **extra}
    return DocRecord(
        doc_id=DOC,
        serialized_doc=None,
        clock=snapshot_clock,
        latest_clock=latest,
        has_snapshot=has_snapshot,
        **fields,
    )


def batches(first: int, last: int) -> list[Batch]:
    return [Batch(clock, [f"op{clock}"]) for clock in range(first, last + 1)]


def pulled(tails: Tails, clock: int, *, has_doc: bool = False, doc_type: str = "list"):
    step = tails.pull(DOC, doc_type, clock, has_doc)
    return None if step is None else ([b.clock for b in step.batches], step.clock)


def test_a_pull_within_the_tail_gets_exactly_what_it_lacks():
    tails = Tails()
    tails.learned(DOC, record(5), 2, batches(3, 5))
    assert pulled(tails, 2) == ([3, 4, 5], 5)
    assert pulled(tails, 4) == ([5], 5)
    assert pulled(tails, 5) == ([], 5)
    assert pulled(tails, 9) == ([], 5)  # a client ahead gets the latest clock
    assert pulled(tails, 1) is None  # before the tail: the database answers


def test_writes_extend_the_tail_and_a_gap_drops_it():
    tails = Tails()
    tails.learned(DOC, record(3), 0, batches(1, 3))
    tails.learned(DOC, record(3), 3, [], own=Batch(4, ["mine"]))
    assert pulled(tails, 0) == ([1, 2, 3, 4], 4)
    # A write whose answer reaches back into the tail extends it too.
    tails.learned(DOC, record(5), 2, batches(3, 5), own=Batch(6, ["x"]))
    assert pulled(tails, 0) == ([1, 2, 3, 4, 5, 6], 6)
    # An answer missing a clock (a restore at 7 stored no batch) is not kept.
    tails.learned(DOC, record(8), 6, [Batch(8, ["y"])])
    assert pulled(tails, 6) is None and len(tails) == 0


def test_an_older_answer_arriving_late_changes_nothing():
    tails = Tails()
    tails.learned(DOC, record(6), 0, batches(1, 6))
    tails.learned(DOC, record(4), 2, batches(3, 4))
    assert pulled(tails, 0) == ([1, 2, 3, 4, 5, 6], 6)


def test_a_clock_heard_from_another_process_makes_the_tail_stale_until_the_database_answers():
    tails = Tails()
    tails.learned(DOC, record(3), 0, batches(1, 3))
    tails.heard(DOC, 3)  # our own write's dirty: nothing new
    assert pulled(tails, 0) == ([1, 2, 3], 3)
    tails.heard(DOC, 5)
    assert pulled(tails, 0) is None
    tails.learned(DOC, record(5), 3, batches(4, 5))
    assert pulled(tails, 0) == ([1, 2, 3, 4, 5], 5)
    tails.heard(DOC, None)  # a change of unknown clock (a restore elsewhere)
    assert pulled(tails, 0) is None and len(tails) == 0


def test_answers_needing_the_snapshot_or_an_error_go_to_the_database():
    tails = Tails()
    tails.learned(DOC, record(5, snapshot_clock=3, has_snapshot=True), 3, batches(4, 5))
    assert pulled(tails, 3, has_doc=True) == ([4, 5], 5)
    assert pulled(tails, 2, has_doc=True) is None  # the snapshot is newer than the client
    assert pulled(tails, 4) is None  # no document sent: the answer carries the snapshot
    assert pulled(tails, 4, has_doc=True, doc_type="other") is None  # a type error
    tails.learned(DOC, record(2), 0, batches(1, 2))
    tails.learned("new", record(0), 0, [])
    assert tails.pull("new", "list", 0, True) is None  # its first snapshot is a write
    tails.learned("gone", record(2, deleted=True), 0, batches(1, 2))
    assert tails.pull("gone", "list", 0, False) is None


def test_bounded_and_unconfirmed_tails_are_not_used(monkeypatch):
    tails = Tails(max_docs=2, max_batches=3, ttl=1.0)
    tails.learned(DOC, record(10), 0, batches(1, 10))
    assert pulled(tails, 7) == ([8, 9, 10], 10)
    assert pulled(tails, 6) is None  # the oldest batches went
    tails.learned("b", record(0), 0, [])
    tails.learned("c", record(0), 0, [])
    assert pulled(tails, 7) is None and len(tails) == 2  # least recently used went
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 1.5)
    assert tails.pull("c", "list", 0, False) is None  # not confirmed for over ttl


def test_drop_forgets():
    tails = Tails()
    tails.learned(DOC, record(1), 0, batches(1, 1))
    tails.drop(DOC)
    assert pulled(tails, 0) is None


def test_tails_no_longer_confirmed_are_forgotten(monkeypatch):
    tails = Tails(ttl=1.0)
    tails.learned("a", record(1), 0, batches(1, 1))
    tails.learned("b", record(1), 0, batches(1, 1))
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 2)
    tails.learned("c", record(1), 0, batches(1, 1))
    assert len(tails) == 1 and tails.pull("c", "list", 0, False) is not None


def test_a_client_ahead_of_the_document_keeps_the_tail():
    tails = Tails()
    tails.learned(DOC, record(3), 0, batches(1, 3))
    tails.learned(DOC, record(3), 9, [])  # a pull from clock 9: nothing, latest 3
    tails.learned(DOC, record(3), 9, [], own=Batch(4, ["ahead"]))  # a write from clock 9
    assert pulled(tails, 0) == ([1, 2, 3, 4], 4)


def test_a_write_is_told_what_the_tail_holds_after_its_clock(monkeypatch):
    tails = Tails(ttl=1.0)
    tails.learned(DOC, record(5), 2, batches(3, 5))
    assert [b.clock for b in tails.after(DOC, 2)] == [3, 4, 5]
    assert [b.clock for b in tails.after(DOC, 4)] == [5]
    assert tails.after(DOC, 5) == []  # nothing after it held: the database reads
    assert tails.after(DOC, 1) == []  # before the tail
    assert tails.after("other", 0) == []
    later = time.monotonic() + 2
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert tails.after(DOC, 2) == []  # not confirmed within ttl
