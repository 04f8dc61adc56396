"""What ORMProvider does beyond the contract: rows, owners, errors, checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.test import override_settings
from django.utils import timezone

from docsync.bindings import BindingRegistry
from docsync.checks_orm import check_orm_database
from docsync.exceptions import StorageError
from docsync.models import Document, OperationBatch, decode_operations, encode_operations
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider
from docsync.squash import squash_document
from tests.bindings import ListBinding

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def provider() -> ORMProvider:
    return ORMProvider()


@pytest.fixture
def user():
    return get_user_model().objects.create_user(username="carol")


def append(provider, doc_id, *operations, origin=Origin()):
    with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
        return tx.save_operations(list(operations), origin)


def test_rows_record_owner_and_who_sent_each_batch(provider, user):
    append(provider, "doc", "a", origin=Origin(str(user.pk), "device-1", "client-1"))
    append(provider, "doc", "b", origin=Origin(None, None, None))
    doc = Document.objects.get(doc_id="doc")
    assert (doc.owner, doc.doc_type, doc.latest_clock, doc.snapshot_clock) == (user, "list", 2, 0)
    batches = list(doc.batches.order_by("clock"))
    assert [(b.clock, b.user, b.device_id, b.client_id) for b in batches] == [
        (1, user, "device-1", "client-1"),
        (2, None, "", ""),
    ]
    assert batches[0].get_operations() == ["a"]


@pytest.mark.parametrize("user_id", ["999999", "not-a-number", ""])
def test_unknown_or_malformed_user_ids_are_ignored(provider, user_id):
    assert append(provider, "doc", "a", origin=Origin(user_id=user_id)) == 1
    doc = Document.objects.get(doc_id="doc")
    assert doc.owner is None and doc.batches.get().user is None
    with provider.transaction("readonly", "doc") as tx:
        assert tx.get_serialized_doc().owner_id is None


def test_squash_failures_are_recorded_for_the_admin_and_cleared(provider):
    registry = BindingRegistry()
    registry.register("list", ListBinding())
    append(provider, "doc", "boom")
    with pytest.raises(ValueError):
        squash_document(provider, registry, "doc")
    assert Document.objects.get().squash_error == "ValueError: boom is not a valid operation"
    with provider.transaction("readwrite", "doc") as tx:
        tx.delete_operations(1)
        tx.save_serialized_doc([], 1)
    append(provider, "doc", "fine")
    squash_document(provider, registry, "doc")
    assert Document.objects.get().squash_error == ""


def test_delete_doc_keeps_a_tombstone_row(provider):
    append(provider, "doc", "a")
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_serialized_doc(["a"], 1)
        assert tx.delete_doc()
    doc = Document.objects.get()
    assert doc.deleted_at is not None and doc.snapshot is None and doc.snapshot_format == ""
    assert OperationBatch.objects.count() == 0


def test_purge_tombstones_deletes_only_old_ones(provider):
    for doc_id in ("old", "recent", "alive"):
        append(provider, doc_id, "a")
    for doc_id in ("old", "recent"):
        with provider.transaction("readwrite", doc_id) as tx:
            tx.delete_doc()
    Document.objects.filter(doc_id="old").update(deleted_at=timezone.now() - timedelta(days=31))
    assert provider.purge_tombstones(timedelta(days=30)) == 1
    assert sorted(Document.objects.values_list("doc_id", flat=True)) == ["alive", "recent"]


def test_database_errors_become_storage_errors(provider):
    with pytest.raises(StorageError) as info:
        with provider.transaction("readwrite", "doc") as tx:
            tx.save_operations(["a"], Origin())
            raise DatabaseError("connection lost")
    assert isinstance(info.value.__cause__, DatabaseError)
    assert not Document.objects.exists()


def test_bytes_nested_in_json_are_refused_with_a_clear_message(provider):
    with pytest.raises(TypeError, match="bytes nested inside a JSON value"):
        append(provider, "doc", {"update": b"\x00"})
    assert not Document.objects.exists()


def test_operations_encoding_is_json_text_unless_bytes_are_involved():
    assert encode_operations([{"b": 1, "a": "é"}]) == ("json", '[{"b":1,"a":"é"}]'.encode())
    fmt, data = encode_operations([b"\x01", "x"])
    assert fmt == "parts" and decode_operations(fmt, memoryview(data)) == [b"\x01", "x"]


def test_unknown_options_are_refused():
    with pytest.raises(ImproperlyConfigured, match="'usin'"):
        ORMProvider(usin="default")


ORM_SETTINGS = {"PROVIDER": "docsync.providers.orm.ORMProvider"}


def test_check_is_silent_on_sqlite_with_immediate_transactions():
    with override_settings(DOCSYNC=ORM_SETTINGS):
        assert check_orm_database() == []


def test_check_warns_on_sqlite_without_immediate_transactions(monkeypatch):
    monkeypatch.setitem(connections.settings["default"], "OPTIONS", {})
    with override_settings(DOCSYNC=ORM_SETTINGS):
        [warning] = check_orm_database()
    assert warning.id == "docsync.W010" and "transaction_mode" in warning.hint


def test_check_reports_an_unknown_alias():
    with override_settings(DOCSYNC={**ORM_SETTINGS, "PROVIDER_OPTIONS": {"using": "nosuch"}}):
        [error] = check_orm_database()
    assert error.id == "docsync.E010"


def test_check_ignores_other_providers():
    assert check_orm_database() == []


def test_check_refuses_postgres_provider_on_another_database():
    provider = {"PROVIDER": "docsync.providers.postgres.PostgresProvider"}
    with override_settings(DOCSYNC=provider):
        [error] = check_orm_database()
    assert error.id == "docsync.E011" and "ORMProvider" in error.hint
    with override_settings(DOCSYNC={**provider, "PROVIDER_OPTIONS": {"using": "postgres"}}):
        assert check_orm_database() == []


def test_check_suggests_postgres_provider_on_postgresql():
    orm_on_postgres = {**ORM_SETTINGS, "PROVIDER_OPTIONS": {"using": "postgres"}}
    with override_settings(DOCSYNC=orm_on_postgres):
        [warning] = check_orm_database()
    assert warning.id == "docsync.W011" and "PostgresProvider" in warning.hint
    subclass = {**orm_on_postgres, "PROVIDER": "tests.test_orm_provider.MyORMProvider"}
    with override_settings(DOCSYNC=subclass):
        assert check_orm_database() == []  # someone's own provider: their choice


class MyORMProvider(ORMProvider):
    """An ORMProvider of someone's own."""
