"""Group commit (PostgresProvider): the writes of several threads share one
transaction, each answered after that commit, one failing write fails alone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import connections

from docsync.bindings import get_binding_registry
from docsync.exceptions import StorageError
from docsync.providers.base import Origin
from docsync.providers.groupcommit import AsyncGroupCommit, GroupCommit, Outcome
from docsync.providers.postgres import PostgresProvider
from docsync.requests import SyncRequest
from docsync.sync import sync_document
from tests.conftest_db import django_db_on, require_database
from tests.test_orm_concurrency import TIMEOUT, run_threads, wait_for_lock_waiters

ORIGIN = Origin(device_id="d", client_id="c")


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def queued(groups: GroupCommit) -> int:
    with groups._lock:
        return len(groups._queue)


def test_items_queued_behind_a_group_run_as_the_next_group():
    """While one group runs, the items submitted meanwhile gather; each
    submitter gets its own value or its own error."""
    groups_run: list[list[int]] = []
    first_running, release = threading.Event(), threading.Event()

    def run_group(items):
        groups_run.append(list(items))
        if items == [0]:
            first_running.set()
            assert release.wait(TIMEOUT)
        return [Outcome(error=ValueError(i)) if i == 3 else Outcome(value=i * 10) for i in items]

    groups: GroupCommit[int, int] = GroupCommit(run_group, max_size=4)
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            results[i] = groups.submit(i)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(0,))]
    threads[0].start()
    assert first_running.wait(TIMEOUT)
    for i in range(1, 7):
        threads.append(threading.Thread(target=submit, args=(i,)))
        threads[-1].start()
    wait_until(lambda: queued(groups) == 6, "6 queued items")
    release.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert groups_run[0] == [0]
    assert sorted(i for group in groups_run[1:] for i in group) == [1, 2, 3, 4, 5, 6]
    assert [len(group) for group in groups_run[1:]] == [4, 2]  # at most max_size
    assert {i: r for i, r in results.items() if i != 3} == {i: i * 10 for i in range(7) if i != 3}
    assert isinstance(results[3], ValueError)


def test_a_group_that_raises_fails_each_of_its_items_and_the_next_group_runs():
    calls = []

    def run_group(items):
        calls.append(list(items))
        raise RuntimeError("boom")

    groups: GroupCommit[int, int] = GroupCommit(run_group)
    with pytest.raises(RuntimeError):
        groups.submit(1)
    with pytest.raises(RuntimeError):
        groups.submit(2)
    assert calls == [[1], [2]]


# -- on PostgreSQL ------------------------------------------------------------


@pytest.fixture
def provider():
    require_database("postgres")
    return PostgresProvider(using="postgres")


def hold_lock_while(provider: PostgresProvider, doc_id: str, writes: dict[str, str]):
    """Sync each of ``writes`` (doc id -> doc type) in a thread of its own while
    another thread's write of ``doc_id`` waits for the row lock we hold; the
    writes queue behind it and run as one group. Returns outcome or error per doc."""
    sync_document(
        provider, SyncRequest("list", doc_id, ["first"], None, 0), ORIGIN, get_binding_registry()
    )
    locked, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}
    docs = list(writes)

    def holder() -> None:
        with provider.transaction("readwrite", doc_id) as tx:
            tx.get_serialized_doc()
            locked.set()
            assert release.wait(TIMEOUT)

    def write(name: str, doc_type: str) -> None:
        req = SyncRequest(doc_type, name, [f"op of {name}"], None, 0)
        try:
            results[name] = provider.sync_step(req, ORIGIN)
        except StorageError as exc:
            results[name] = exc

    def main(thread: int) -> None:
        if thread == 0:
            holder()
        elif thread == 1:
            assert locked.wait(TIMEOUT)
            write(doc_id, "list")  # leads the first group, waits for the lock
        elif thread == 2:
            try:
                assert locked.wait(TIMEOUT)
                wait_for_lock_waiters("postgres", 1)
                wait_until(lambda: queued(provider._groups) == len(docs), "queued writes")
            finally:
                release.set()
        else:
            assert locked.wait(TIMEOUT)
            wait_for_lock_waiters("postgres", 1)
            name = docs[thread - 3]
            write(name, writes[name])

    run_threads(3 + len(docs), main)
    return results


def transactions(doc_ids: list[str]) -> dict[str, tuple[int, str]]:
    """Each document's one batch: (clock, the id of the transaction that wrote it)."""
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT d.doc_id, b.clock, b.xmin::text FROM docsync_operationbatch b "
            "JOIN docsync_document d ON d.id = b.document_id WHERE d.doc_id = ANY(%s)",
            [doc_ids],
        )
        return {doc: (clock, xid) for doc, clock, xid in cursor.fetchall()}


@pytest.mark.postgres
@django_db_on("postgres")
def test_writes_queued_together_share_one_transaction(provider):
    docs = {f"d{i}": "list" for i in range(5, 0, -1)}
    results = hold_lock_while(provider, "blocker", docs)
    assert all(results[doc].clock == 1 and not results[doc].refused for doc in docs)
    stored = transactions(list(docs))
    assert {doc: clock for doc, (clock, _) in stored.items()} == dict.fromkeys(docs, 1)
    assert len({xid for _, xid in stored.values()}) == 1  # one transaction, one commit
    assert results["blocker"].clock == 2


@pytest.mark.postgres
@django_db_on("postgres")
def test_one_failing_write_fails_alone(provider):
    too_long = "t" * 101  # longer than the type column: the insert fails
    docs = {"d1": "list", "d2": too_long, "d3": "list", "d4": "list"}
    results = hold_lock_while(provider, "blocker", docs)
    assert isinstance(results["d2"], StorageError)
    assert all(results[doc].clock == 1 for doc in ("d1", "d3", "d4"))
    stored = transactions(list(docs))
    assert sorted(stored) == ["d1", "d3", "d4"]
    assert all(clock == 1 for clock, _ in stored.values())


@pytest.mark.postgres
@django_db_on("postgres")
def test_many_writers_many_documents_nothing_lost_or_doubled(provider):
    """16 threads x 30 writes over 4 documents, through sync_document: every
    write stored once, clocks gap-free per document."""
    threads, writes = 16, 30
    clocks: dict[str, list[int]] = {f"doc{i}": [] for i in range(4)}

    def work(thread: int) -> None:
        doc = f"doc{thread % 4}"
        origin = Origin(device_id=f"d{thread}", client_id=f"c{thread}")
        for i in range(writes):
            req = SyncRequest("list", doc, [[thread, i]], None, 0)
            clocks[doc].append(sync_document(provider, req, origin, get_binding_registry()).clock)

    run_threads(threads, work)
    for doc, seen in clocks.items():
        assert sorted(seen) == list(range(1, threads // 4 * writes + 1))
        with provider.transaction("readonly", doc) as tx:
            batches = tx.get_operations(0)
        values = [tuple(op) for batch in batches for op in batch.operations]
        assert len(values) == len(set(values)) == threads // 4 * writes


# -- from the event loop (AsyncGroupCommit, PostgresProvider.sync_write) ----------


async def test_coroutines_queued_behind_a_group_run_as_the_next_group():
    """While a group runs, the coroutines that submit meanwhile gather (no
    thread each); a waiter cancelled before its group starts is dropped."""
    groups_run: list[list[int]] = []
    first_running, release = asyncio.Event(), asyncio.Event()

    async def run_group(items):
        groups_run.append(list(items))
        if items == [0]:
            first_running.set()
            await release.wait()
        return [Outcome(error=ValueError(i)) if i == 3 else Outcome(value=i * 10) for i in items]

    groups: AsyncGroupCommit[int, int] = AsyncGroupCommit(run_group, max_size=3)
    first = asyncio.ensure_future(groups.submit(0))
    await first_running.wait()
    later = {i: asyncio.ensure_future(groups.submit(i)) for i in range(1, 7)}
    await asyncio.sleep(0)
    later[2].cancel()  # its connection went away before its group started
    release.set()
    assert await first == 0
    results = await asyncio.gather(*later.values(), return_exceptions=True)
    assert groups_run == [[0], [1, 3], [4, 5, 6]]
    assert results[0] == 10 and isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[2], ValueError) and results[3:] == [40, 50, 60]


@pytest.mark.postgres
@pytest.mark.parametrize("loop_connection", [True, False], ids=["loop", "threads"])
@django_db_on("postgres", transaction=True)
async def test_writes_from_the_event_loop_share_transactions_and_stay_in_order(loop_connection):
    """60 concurrent writes of 3 documents from one event loop, each from
    clock 0: clocks gap-free per document, each write answered with exactly
    the batches before its own, and far fewer transactions than writes; on
    the loop's own connection or in a database thread."""
    require_database("postgres")
    provider = PostgresProvider(using="postgres", loop_connection=loop_connection)
    writes = [(f"loop{i % 3}", i) for i in range(60)]

    async def write(doc: str, i: int):
        req = SyncRequest("list", doc, [[doc, i]], None, 0)
        origin = Origin(device_id=f"d{i}", client_id=f"c{i}")
        return doc, i, await provider.sync_write(req, origin)

    results = await asyncio.gather(*(write(doc, i) for doc, i in writes))
    for doc in ("loop0", "loop1", "loop2"):
        steps = [(i, step) for d, i, step in results if d == doc]
        assert sorted(step.clock for _, step in steps) == list(range(1, 21))
        ops_by_clock = {step.clock: [doc, i] for i, step in steps}
        for _, step in steps:
            got = [op for batch in step.batches for op in batch.operations]
            assert got == [ops_by_clock[clock] for clock in range(1, step.clock)]
    stored = await asyncio.to_thread(_transactions_of, ["loop0", "loop1", "loop2"])
    assert len(stored) == 60 and len(set(stored)) < 30


@pytest.mark.postgres
@pytest.mark.parametrize("loop_connection", [True, False], ids=["loop", "threads"])
@django_db_on("postgres", transaction=True)
async def test_a_group_does_not_read_back_what_it_wrote(loop_connection, monkeypatch):
    """Writes of one document in one group are not read again by the writes
    after them (the group holds them), nor are the batches of the tail when
    the group starts; what another process wrote meanwhile is read. Every
    answer is still exactly the batches before the write's own."""
    require_database("postgres")
    provider = PostgresProvider(using="postgres", loop_connection=loop_connection)
    elsewhere = PostgresProvider(using="postgres", loop_connection=False)
    docs = ["rb0", "rb1", "rb2"]
    ops: dict[str, dict[int, list]] = {doc: {} for doc in docs}
    for doc in docs:  # clock 1 here (in the tail), clock 2 in another process (not)
        step = await provider.sync_write(SyncRequest("list", doc, [[doc, "here"]], None, 0), ORIGIN)
        ops[doc][step.clock] = [doc, "here"]
        req = SyncRequest("list", doc, [[doc, "there"]], None, 1)
        step = await asyncio.to_thread(elsewhere.sync_step, req, ORIGIN)
        ops[doc][step.clock] = [doc, "there"]
    read: list[int] = []
    if loop_connection:
        execute = provider._async.execute

        async def spy(sql, params, what, quiet=False):
            rows = await execute(sql, params, what, quiet)
            read.append(sum(1 for row in rows if row[1] == "batch"))
            return rows

        monkeypatch.setattr(provider._async, "execute", spy)
    else:
        execute = provider._execute

        def spy(sql, params, what, quiet=False):
            rows = execute(sql, params, what, quiet)
            read.append(sum(1 for row in rows if row[1] == "batch"))
            return rows

        monkeypatch.setattr(provider, "_execute", spy)

    async def write(doc: str, i: int):
        req = SyncRequest("list", doc, [[doc, i]], None, 0)
        return doc, i, await provider.sync_write(req, Origin(device_id=f"d{i}", client_id=f"c{i}"))

    results = await asyncio.gather(*(write(docs[i % 3], i) for i in range(60)))
    for doc in docs:
        steps = [(i, step) for d, i, step in results if d == doc]
        assert sorted(step.clock for _, step in steps) == list(range(3, 23))
        ops[doc].update({step.clock: [doc, i] for i, step in steps})
        for _, step in steps:
            got = [op for batch in step.batches for op in batch.operations]
            assert got == [ops[doc][clock] for clock in range(1, step.clock)]
    # At most clocks 1 and 2 per write (the tail learns no document's
    # creation, nor another process's batch): reading back what the group
    # wrote before each write would add 570 (3 x (0 + 1 + ... + 19)).
    assert sum(read) <= 2 * 60, read


def _transactions_of(doc_ids: list[str]) -> list[str]:
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT b.xmin::text FROM docsync_operationbatch b "
            "JOIN docsync_document d ON d.id = b.document_id WHERE d.doc_id = ANY(%s)",
            [doc_ids],
        )
        return [xid for (xid,) in cursor.fetchall()]


@pytest.mark.postgres
@django_db_on("postgres")
def test_a_write_reads_only_what_the_tail_lacks(provider, monkeypatch):
    """The batches this process holds after the writer's clock are not read
    again; the answer is the same gap-free run, with another process's
    writes (not in the tail) read from the database."""
    elsewhere = PostgresProvider(using="postgres")  # another process: its own tails
    registry = get_binding_registry()

    def write(p, clock, op):
        return sync_document(p, SyncRequest("list", "doc", [op], None, clock), ORIGIN, registry)

    for n in range(5):
        write(provider, n, f"here{n}")  # clocks 1..5, all in this process's tail
    write(elsewhere, 5, "there6")
    write(elsewhere, 6, "there7")
    sent = []
    execute = provider._execute

    def spy(sql, params, doc_id, quiet=False):
        sent.append(params)
        return execute(sql, params, doc_id, quiet)

    monkeypatch.setattr(provider, "_execute", spy)
    result = provider.sync_step(SyncRequest("list", "doc", ["late"], None, 2), ORIGIN)
    assert sent[-1][-1] == 5  # told: batches up to 5 are held
    assert result.clock == 8
    assert [b.clock for b in result.batches] == [3, 4, 5, 6, 7]
    assert [b.operations for b in result.batches] == [
        ["here2"],
        ["here3"],
        ["here4"],
        ["there6"],
        ["there7"],
    ]
