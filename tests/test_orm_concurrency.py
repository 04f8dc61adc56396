"""Providers under real concurrency: threads, each with its own connection.

Run on PostgreSQL, MariaDB and a SQLite *file* (the in-memory SQLite of the
other tests is a shared-cache database, whose table locks fail at once
instead of waiting), and on the in-memory provider for comparison.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.db import connections

from docsync.bindings import BindingRegistry, get_binding_registry
from docsync.providers.base import BaseProvider, Origin
from docsync.providers.memory import InMemoryProvider
from docsync.providers.orm import ORMProvider
from docsync.providers.postgres import PostgresProvider
from docsync.requests import SyncRequest
from docsync.squash import squash_document
from docsync.sync import sync_document
from tests.bindings import ListBinding
from tests.conftest_db import db_param, django_db_on, require_database

THREADS = 8
APPENDS = 50
TIMEOUT = 120

PROVIDERS = [
    db_param("memory", None, id="memory"),
    db_param("sqlite-file", None, id="orm-sqlite-file"),
    db_param("postgres", "postgres", id="orm-postgres"),
    db_param("mariadb", "mariadb", id="orm-mariadb"),
    db_param("postgres-provider", "postgres", id="postgres"),
]


@pytest.fixture
def sqlite_file_alias(tmp_path, django_db_blocker):
    """A migrated SQLite file database, as alias ``docsync_file``."""
    alias = "docsync_file"
    connections.settings[alias] = {
        **connections.settings["default"],
        "NAME": str(tmp_path / "docsync.sqlite3"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        "TEST": {"NAME": None},
    }
    with django_db_blocker.unblock():
        call_command("migrate", database=alias, verbosity=0)
        connections[alias].close()
        yield alias
        connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


@pytest.fixture(params=PROVIDERS)
def provider(request) -> BaseProvider:
    if request.param == "memory":
        return InMemoryProvider()
    if request.param == "sqlite-file":
        return ORMProvider(using=request.getfixturevalue("sqlite_file_alias"))
    if request.param == "postgres-provider":
        require_database("postgres")
        return PostgresProvider(using="postgres")
    require_database(request.param)
    return ORMProvider(using=request.param)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads at once; re-raise their errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def main(index: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT)
            target(index)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's connections

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "threads still running"
    if errors:
        raise errors[0]


def append(provider: BaseProvider, doc_id: str, value) -> int:
    with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
        return tx.save_operations([value], Origin(device_id="d"))


def read_all(provider: BaseProvider, doc_id: str):
    with provider.transaction("readonly", doc_id) as tx:
        return tx.get_serialized_doc(), tx.get_operations(0)


def assert_per_thread_order(values: list[list[int]], threads: int, appends: int) -> None:
    for thread in range(threads):
        assert [i for t, i in values if t == thread] == list(range(appends))


def test_concurrent_appends_get_gap_free_clocks_in_commit_order(provider):
    clocks: list[list[int]] = [[] for _ in range(THREADS)]

    def work(thread: int) -> None:
        for i in range(APPENDS):
            clocks[thread].append(append(provider, "doc", [thread, i]))

    run_threads(THREADS, work)
    record, batches = read_all(provider, "doc")
    total = THREADS * APPENDS
    assert record.latest_clock == total
    assert [batch.clock for batch in batches] == list(range(1, total + 1))
    assert sorted(clock for own in clocks for clock in own) == list(range(1, total + 1))
    for thread, own in enumerate(clocks):
        assert own == sorted(own)  # each thread's batches in the order it sent them
        assert [batches[clock - 1].operations for clock in own] == [
            [[thread, i]] for i in range(APPENDS)
        ]
    assert_per_thread_order([batch.operations[0] for batch in batches], THREADS, APPENDS)


def test_concurrent_creators_of_one_document_share_it(provider):
    clocks: list[int] = []
    run_threads(THREADS, lambda thread: clocks.append(append(provider, "fresh", thread)))
    record, batches = read_all(provider, "fresh")
    assert sorted(clocks) == list(range(1, THREADS + 1))
    assert record.latest_clock == THREADS and len(batches) == THREADS


def test_squashing_while_others_append_loses_nothing(provider):
    registry = BindingRegistry()
    registry.register("list", ListBinding())
    writers, appends = 4, 30
    done, squashed = threading.Event(), threading.Event()
    finished = _Counter()

    def squasher() -> None:
        try:
            while not done.is_set():
                if squash_document(provider, registry, "doc"):
                    squashed.set()
        finally:
            squashed.set()  # never leave the writers waiting

    def writer(thread: int) -> None:
        try:
            for i in range(appends):
                if i == appends // 2:  # make sure squashes happen mid-stream
                    assert squashed.wait(TIMEOUT)
                append(provider, "doc", [thread, i])
        finally:
            if finished.arrive() == writers:
                done.set()

    run_threads(writers + 1, lambda thread: squasher() if thread == writers else writer(thread))
    squash_document(provider, registry, "doc")
    record, batches = read_all(provider, "doc")
    assert batches == [] and record.clock == record.latest_clock == writers * appends
    assert len(record.serialized_doc) == writers * appends
    assert_per_thread_order(record.serialized_doc, writers, appends)


def test_concurrent_syncs_give_every_writer_every_batch_once(provider):
    """Writers and pullers through sync_document (one step where the provider
    can): each client's copy ends up holding every batch exactly once."""
    registry = BindingRegistry()
    registry.register("list", ListBinding())
    writers, pullers, appends = 4, 4, 25
    sync_document(provider, SyncRequest("list", "doc", ["start"], None, 0), Origin(), registry)
    views: list[list] = [[] for _ in range(writers + pullers)]
    done = threading.Event()
    finished = _Counter()

    def client(thread: int) -> None:
        clock, view = 0, views[thread]
        origin = Origin(device_id=f"d{thread}", client_id=f"c{thread}")
        for i in range(appends * 4):
            if thread < writers and i == appends or done.is_set():
                break
            operations = [[thread, i]] if thread < writers else []
            req = SyncRequest("list", "doc", operations, None, clock)
            outcome = sync_document(provider, req, origin, registry)
            view.extend(outcome.operations)
            view.extend(operations)
            clock = outcome.clock
        if thread < writers and finished.arrive() == writers:
            done.set()
        assert done.wait(TIMEOUT)  # then everyone catches up
        outcome = sync_document(
            provider, SyncRequest("list", "doc", [], None, clock), origin, get_binding_registry()
        )
        view.extend(outcome.operations)

    run_threads(writers + pullers, client)
    everything = ["start"] + [[t, i] for t in range(writers) for i in range(appends)]
    for view in views:
        assert sorted(map(str, view)) == sorted(map(str, everything))
    _, batches = read_all(provider, "doc")
    assert len(batches) == len(everything)


class _Counter:
    """Counts arrivals; ``arrive()`` returns the arrival number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def arrive(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


@pytest.mark.postgres
@django_db_on("postgres")
def test_a_reader_waits_for_a_squash_to_commit():
    """A readonly transaction blocks on the row lock, then sees the squash whole."""
    require_database("postgres")
    provider = ORMProvider(using="postgres")
    for n in range(3):
        append(provider, "doc", n)
    locked, release = threading.Event(), threading.Event()
    seen = []

    def squasher(_: int) -> None:
        with provider.transaction("readwrite", "doc") as tx:
            tx.save_serialized_doc([[0], [1], [2]], 3)
            tx.delete_operations(3)
            locked.set()
            assert release.wait(TIMEOUT)

    def reader(_: int) -> None:
        assert locked.wait(TIMEOUT)
        record, batches = read_all(provider, "doc")
        seen.append((record.clock, record.serialized_doc, batches))

    def main(thread: int) -> None:
        if thread == 0:
            squasher(thread)
        elif thread == 1:
            reader(thread)
        else:
            try:
                assert locked.wait(TIMEOUT)
                wait_for_lock_waiters("postgres", 1)
            finally:
                release.set()

    run_threads(3, main)
    assert seen == [(3, [[0], [1], [2]], [])]


def wait_for_lock_waiters(alias: str, count: int) -> None:
    """Wait until ``count`` sessions of the test database wait on a lock."""
    deadline = time.monotonic() + 30
    with connections[alias].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"no session of {alias!r} waited on a lock")


@pytest.mark.postgres
@django_db_on("postgres")
def test_postgres_provider_pulls_do_not_wait_for_a_writer():
    """A pull reads a snapshot without the row lock: it answers at once, with
    what was committed, while a writer holds the document."""
    require_database("postgres")
    provider = PostgresProvider(using="postgres")
    origin = Origin(device_id="d")
    sync_document(
        provider, SyncRequest("list", "doc", ["a"], None, 0), origin, get_binding_registry()
    )
    locked, release = threading.Event(), threading.Event()
    seen = []

    def writer(_: int) -> None:
        with provider.transaction("readwrite", "doc") as tx:
            tx.save_operations(["b"], origin)
            locked.set()
            assert release.wait(TIMEOUT)

    def reader(_: int) -> None:
        assert locked.wait(TIMEOUT)
        try:
            outcome = sync_document(
                provider, SyncRequest("list", "doc", [], None, 0), origin, get_binding_registry()
            )
            seen.append((outcome.operations, outcome.clock))
        finally:
            release.set()

    run_threads(2, lambda thread: writer(thread) if thread == 0 else reader(thread))
    assert seen == [(["a"], 1)]
    outcome = sync_document(
        provider, SyncRequest("list", "doc", [], None, 1), origin, get_binding_registry()
    )
    assert (outcome.operations, outcome.clock) == (["b"], 2)
