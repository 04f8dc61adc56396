"""ORMProvider costs a small, fixed number of queries per transaction.

Counts include the ``BEGIN`` and ``COMMIT`` that Django records; they do not
depend on the length of the log.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test.utils import CaptureQueriesContext

from docsync.bindings import get_binding_registry
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider
from docsync.requests import SyncRequest
from docsync.sync import sync_document
from tests.conftest_db import db_param, django_db_on, require_database

ALIASES = [
    db_param("default", "default", id="sqlite"),
    db_param("postgres", "postgres", id="postgres"),
    db_param("mariadb", "mariadb", id="mariadb"),
]


@pytest.fixture(params=ALIASES)
def alias(request) -> str:
    require_database(request.param)
    return request.param


@pytest.fixture
def origin(alias) -> Origin:
    user = get_user_model().objects.db_manager(alias).create_user(username="bob")
    return Origin(user_id=str(user.pk), device_id="d", client_id="c")


def count_queries(alias: str, work) -> int:
    with CaptureQueriesContext(connections[alias]) as queries:
        work()
    return len(queries.captured_queries)


def fill(provider: ORMProvider, doc_id: str, batches: int, origin: Origin) -> None:
    with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
        for n in range(batches):
            tx.save_operations([n, {"n": n}], origin)


def sync(provider: ORMProvider, doc_id: str, origin: Origin):
    """What a sync with operations does: read the record and log, append."""

    def work():
        with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
            record = tx.get_serialized_doc(with_snapshot=False)
            tx.get_operations(record.clock if record else 0)
            tx.save_operations(["new"], origin)

    return work


def pull(provider: ORMProvider, doc_id: str):
    def work():
        with provider.transaction("readonly", doc_id) as tx:
            tx.get_serialized_doc(with_snapshot=False)
            tx.get_operations(0)

    return work


def squash_write(provider: ORMProvider, doc_id: str):
    def work():
        with provider.transaction("readwrite", doc_id) as tx:
            record = tx.get_serialized_doc(with_snapshot=False)
            snapshot = ["folded"]
            tx.save_serialized_doc(snapshot, record.latest_clock)
            tx.save_version(snapshot, record.latest_clock, kind="squash")
            tx.archive_operations(record.latest_clock)
            tx.record_squash_failure(None)

    return work


@pytest.mark.parametrize("batches", [1, 200])
def test_queries_do_not_grow_with_the_log(alias, origin, batches):
    provider = ORMProvider(using=alias)
    fill(provider, "doc", batches, origin)
    # BEGIN, lock, read log, COMMIT
    assert count_queries(alias, pull(provider, "doc")) == 4
    # BEGIN, lock, read log, look up the user, insert batch, update document, COMMIT
    assert count_queries(alias, sync(provider, "doc", origin)) == 7
    # BEGIN, lock, insert version, copy batches to history, delete them,
    # update document, COMMIT
    assert count_queries(alias, squash_write(provider, "doc")) == 7


def test_creating_a_document_costs_two_more_queries(alias, origin):
    provider = ORMProvider(using=alias)
    # BEGIN, lock (no row), upsert document, lock it, look up the
    # user, insert batch, update document, COMMIT (a new log is not read)
    assert count_queries(alias, sync(provider, "new", origin)) == 8
    assert count_queries(alias, pull(provider, "missing")) == 3  # BEGIN, lock, COMMIT


def test_a_sync_remembers_what_the_client_stored_in_one_or_two_queries(alias, origin):
    provider = ORMProvider(using=alias)
    fill(provider, "doc", 3, origin)

    def write(operations, clock):
        req = SyncRequest("list", "doc", operations, None, clock)
        return lambda: sync_document(provider, req, origin, get_binding_registry())

    # BEGIN, lock, read log, look up the user, insert batch, upsert the
    # client's commit, update document, COMMIT
    assert count_queries(alias, write(["new"], 3)) == 8
    # Behind the document (a resend is possible): its commit is looked up too.
    assert count_queries(alias, write(["newer"], 1)) == 9
    # A resend: BEGIN, lock, read log, look up the commit, COMMIT.
    assert count_queries(alias, write(["newer"], 1)) == 5


@pytest.mark.postgres
@django_db_on("postgres")
def test_postgres_provider_answers_a_sync_in_one_statement(monkeypatch):
    """PostgresProvider: every sync is one statement (no BEGIN, no COMMIT, no
    ORM query), whatever the log's length; a pull takes no lock."""
    require_database("postgres")
    import psycopg

    from docsync.providers.postgres import PostgresProvider
    from docsync.requests import SyncRequest
    from docsync.sync import sync_document

    provider = PostgresProvider(using="postgres")
    user = get_user_model().objects.db_manager("postgres").create_user(username="carl")
    origin = Origin(user_id=str(user.pk), device_id="d", client_id="c")
    sync_document(
        provider, SyncRequest("list", "doc", ["first"], None, 0), origin, get_binding_registry()
    )  # installs
    statements = []
    execute = psycopg.Cursor.execute

    def counting(cursor, query, *args, **kwargs):
        statements.append(query)
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    for clock, operations in [(0, ["a"]), (2, []), (0, [])] + [(n, [n]) for n in range(2, 50)]:
        before = len(statements)
        with CaptureQueriesContext(connections["postgres"]) as orm:
            sync_document(
                provider,
                SyncRequest("list", "doc", operations, None, clock),
                origin,
                get_binding_registry(),
            )
        assert len(statements) - before == 1 and len(orm.captured_queries) == 0
    assert all("FOR UPDATE" not in query for query in statements if "docsync_sync" not in query)
    # A new document too.
    sync_document(
        provider, SyncRequest("list", "new", ["x"], None, 0), origin, get_binding_registry()
    )
    assert len(statements) == 52
