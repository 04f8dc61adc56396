"""The provider contract suite: every provider must pass all of it.

Parametrized over ``InMemoryProvider``, ``ORMProvider`` on SQLite,
PostgreSQL and MariaDB, ``PostgresProvider``, and the worked example of
docs/extending.md (a provider on JSON files); a new provider proves itself
by being added to ``PROVIDERS``. The transactions are the contract; the
sync tests at the end go through ``docsync.sync.sync_document``, which a
provider may answer in one step (``sync_step``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from docsync.bindings import BindingRegistry, get_binding_registry
from docsync.exceptions import (
    DocumentDeleted,
    DocumentNotFound,
    HistoryUnavailable,
    InvalidValue,
    StorageError,
    ValidationError,
)
from docsync.history import (
    HistoryEntry,
    Restored,
    document_history,
    prune_document,
    restore_document,
    state_at,
)
from docsync.providers.base import BaseProvider, Batch, ClientCommit, DocRecord, Origin
from docsync.providers.memory import InMemoryProvider
from docsync.providers.orm import ORMProvider
from docsync.providers.postgres import PostgresProvider
from docsync.requests import SyncRequest
from docsync.squash import SquashResult, squash_document
from docsync.sync import OwnerChanged, SyncOutcome, sync_document
from tests.bindings import HookedListBinding, ListBinding
from tests.conftest_db import db_param, require_database
from tests.snippets import load_module

ORIGIN = Origin(user_id=None, device_id="device-1", client_id="client-1")

PROVIDERS = [
    db_param(None, None, id="memory"),
    db_param("default", "default", id="orm-sqlite"),
    db_param("postgres", "postgres", id="orm-postgres"),
    db_param("mariadb", "mariadb", id="orm-mariadb"),
    db_param("postgres-provider", "postgres", id="postgres"),
    db_param("docs-example", None, id="docs-json-files"),
]


@pytest.fixture(params=PROVIDERS)
def provider(request, tmp_path) -> BaseProvider:
    alias = request.param
    if alias == "postgres-provider":
        require_database("postgres")
        return PostgresProvider(using="postgres")
    if alias == "docs-example":
        return load_module("json_file_provider").JSONFileProvider(tmp_path / "documents")
    require_database(alias)
    return InMemoryProvider() if alias is None else ORMProvider(using=alias)


@pytest.fixture
def user_id(provider) -> str:
    """The id of an existing user, as a transport would pass it in an Origin."""
    if not isinstance(provider, ORMProvider):
        return "7"
    manager = get_user_model().objects.db_manager(provider.using)
    return str(manager.create_user(username="alice", password="x").pk)


def registry(binding=None) -> BindingRegistry:
    result = BindingRegistry()
    result.register("list", binding or ListBinding())
    return result


def append(provider: BaseProvider, doc_id: str, *operations: Any, origin=ORIGIN) -> int:
    with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
        return tx.save_operations(list(operations), origin)


def record(provider: BaseProvider, doc_id: str) -> DocRecord | None:
    with provider.transaction("readonly", doc_id) as tx:
        return tx.get_serialized_doc()


def log(provider: BaseProvider, doc_id: str, after: int = 0, up_to: int | None = None):
    with provider.transaction("readonly", doc_id) as tx:
        return tx.get_operations(after, up_to)


class Boom(Exception):
    pass


# Reading and creating.


def test_missing_document_reads_as_none(provider):
    with provider.transaction("readonly", "nope") as tx:
        assert tx.get_serialized_doc() is None
        assert tx.get_operations(0) == []


def test_readwrite_transaction_without_writes_creates_nothing(provider):
    with provider.transaction("readwrite", "nope", doc_type="list") as tx:
        assert tx.get_serialized_doc() is None
        assert tx.get_operations(0) == []
        tx.record_squash_failure("nothing to record")
    assert record(provider, "nope") is None


def test_save_operations_creates_the_document(provider, user_id):
    origin = Origin(user_id=user_id, device_id="d", client_id="c")
    with provider.transaction("readwrite", "doc", doc_type="list") as tx:
        assert tx.save_operations([{"op": 1}], origin) == 1
        assert tx.get_serialized_doc() == DocRecord(
            doc_id="doc", doc_type="list", serialized_doc=None, clock=0, latest_clock=1,
            owner_id=user_id,
        )  # fmt: skip
    stored = record(provider, "doc")
    assert stored == DocRecord("doc", "list", None, 0, 1, deleted=False, owner_id=user_id)
    assert stored.pending == 1
    assert log(provider, "doc") == [Batch(1, [{"op": 1}])]


def test_save_serialized_doc_creates_the_document(provider, user_id):
    origin = Origin(user_id=user_id)
    with provider.transaction("readwrite", "doc", doc_type="list") as tx:
        tx.save_serialized_doc(["a", "b"], 5, origin)
    stored = record(provider, "doc")
    assert stored == DocRecord("doc", "list", ["a", "b"], 5, 5, owner_id=user_id)
    assert stored.pending == 0
    assert append(provider, "doc", "c") == 6


def test_existing_document_keeps_its_type_and_owner(provider, user_id):
    append(provider, "doc", 1, origin=Origin(user_id=user_id))
    with provider.transaction("readwrite", "doc", doc_type="other") as tx:
        tx.save_operations([2], Origin(user_id=None))
    stored = record(provider, "doc")
    assert (stored.doc_type, stored.owner_id) == ("list", user_id)


# Clocks and the log.


def test_clocks_are_gap_free_across_and_within_transactions(provider):
    assert [append(provider, "doc", n) for n in range(3)] == [1, 2, 3]
    with provider.transaction("readwrite", "doc") as tx:
        assert [tx.save_operations([n], ORIGIN) for n in range(3, 6)] == [4, 5, 6]
        assert tx.get_serialized_doc().latest_clock == 6
    assert [batch.clock for batch in log(provider, "doc")] == [1, 2, 3, 4, 5, 6]
    assert record(provider, "other") is None


def test_documents_have_their_own_clocks(provider):
    assert append(provider, "a", 1) == 1
    assert append(provider, "b", 1) == 1
    assert append(provider, "a", 2) == 2


@pytest.mark.parametrize(
    "after, up_to, expected",
    [
        (0, None, [1, 2, 3, 4, 5]),
        (2, None, [3, 4, 5]),
        (2, 4, [3, 4]),
        (0, 1, [1]),
        (5, None, []),
        (4, 4, []),
        (0, 0, []),
        (3, 100, [4, 5]),
    ],
)
def test_get_operations_ranges(provider, after, up_to, expected):
    for n in range(1, 6):
        append(provider, "doc", f"op{n}", n)
    batches = log(provider, "doc", after, up_to)
    assert batches == [Batch(clock, [f"op{clock}", clock]) for clock in expected]


def test_get_operations_sees_writes_of_the_same_transaction(provider):
    append(provider, "doc", "a")
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_operations(["b"], ORIGIN)
        assert tx.get_operations(0) == [Batch(1, ["a"]), Batch(2, ["b"])]


def test_save_serialized_doc_raises_latest_clock_never_lowers_it(provider):
    for n in range(3):
        append(provider, "doc", n)
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_serialized_doc([0, 1], 2)
    assert (record(provider, "doc").clock, record(provider, "doc").latest_clock) == (2, 3)
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_serialized_doc([0, 1, 2, "x"], 10)
    stored = record(provider, "doc")
    assert (stored.serialized_doc, stored.clock, stored.latest_clock) == ([0, 1, 2, "x"], 10, 10)
    assert append(provider, "doc", "next") == 11


def test_delete_operations_removes_only_up_to_the_clock(provider):
    for n in range(1, 6):
        append(provider, "doc", n)
    with provider.transaction("readwrite", "doc") as tx:
        assert tx.delete_operations(3) == 3
        assert tx.delete_operations(3) == 0
    assert [batch.clock for batch in log(provider, "doc")] == [4, 5]
    assert record(provider, "doc").latest_clock == 5
    assert append(provider, "doc", 6) == 6


def test_an_error_rolls_back_every_write(provider):
    append(provider, "doc", "a")
    append(provider, "doc", "b")
    before = (record(provider, "doc"), log(provider, "doc"))
    with pytest.raises(Boom):
        with provider.transaction("readwrite", "doc") as tx:
            tx.save_operations(["c"], ORIGIN)
            tx.save_serialized_doc(["a", "b", "c"], 3)
            tx.delete_operations(3)
            tx.record_squash_failure("failed")
            raise Boom
    assert (record(provider, "doc"), log(provider, "doc")) == before
    assert append(provider, "doc", "c") == 3


def test_an_error_while_creating_leaves_no_document(provider):
    with pytest.raises(Boom):
        with provider.transaction("readwrite", "new", doc_type="list") as tx:
            tx.save_operations(["a"], ORIGIN)
            raise Boom
    assert record(provider, "new") is None
    assert append(provider, "new", "a") == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda tx: tx.save_operations([1], ORIGIN),
        lambda tx: tx.save_serialized_doc([1], 1),
        lambda tx: tx.delete_operations(1),
        lambda tx: tx.delete_doc(),
    ],
    ids=["save_operations", "save_serialized_doc", "delete_operations", "delete_doc"],
)
def test_readonly_transactions_refuse_writes(provider, write):
    append(provider, "doc", 0)
    with pytest.raises(RuntimeError, match="readonly"):
        with provider.transaction("readonly", "doc") as tx:
            write(tx)
    assert log(provider, "doc") == [Batch(1, [0])]


# Tombstones.


def test_delete_doc_leaves_a_tombstone(provider):
    append(provider, "doc", "a")
    append(provider, "doc", "b")
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_serialized_doc(["a"], 1)
    with provider.transaction("readwrite", "doc") as tx:
        assert tx.delete_doc() is True
        assert tx.get_serialized_doc().deleted
    stored = record(provider, "doc")
    assert stored.deleted and stored.serialized_doc is None
    assert (stored.doc_type, stored.latest_clock) == ("list", 2)
    assert log(provider, "doc") == []
    with provider.transaction("readwrite", "doc") as tx:
        assert tx.delete_doc() is False
    assert record(provider, "doc").deleted


def test_delete_doc_of_a_missing_document_is_false(provider):
    with provider.transaction("readwrite", "nope", doc_type="list") as tx:
        assert tx.delete_doc() is False
    assert record(provider, "nope") is None


# Values round-trip exactly.

SNAPSHOTS = [
    {"b": 1, "a": {"z": [1, 2, {"y": None, "x": False}], "c": True}, "é": "日本語 🌍"},
    2**100,
    -(2**70),
    [0.1, 1e300, -0.0, 3.0, 5e-324],
    "nul \u0000, lone surrogate \ud800, emoji 🎉",
    b"\x00\x01\xfe\xffbinary\r\n",
    b"",
    "",
    0,
    False,
    [],
    {},
]


@pytest.mark.parametrize("value", SNAPSHOTS, ids=[f"snapshot{i}" for i in range(len(SNAPSHOTS))])
def test_snapshots_round_trip(provider, value):
    with provider.transaction("readwrite", "doc", doc_type="list") as tx:
        tx.save_serialized_doc(value, 1)
    stored = record(provider, "doc").serialized_doc
    assert type(stored) is type(value)
    assert stored == value
    if not isinstance(value, bytes):
        assert json.dumps(stored) == json.dumps(value)  # same key order, same floats


OPERATIONS = [
    [{"b": 1, "a": 2}, [1, [2, {"y": 3, "x": 4}]], "text é🌍", 2**80, None, 1.5, True],
    [b"\x00\xff update", {"json": "and bytes"}, b"", "s", 2**70],
    [b"only bytes"],
    [],
]


@pytest.mark.parametrize(
    "operations", OPERATIONS, ids=[f"operations{i}" for i in range(len(OPERATIONS))]
)
def test_operations_round_trip(provider, operations):
    append(provider, "doc", *operations)
    [batch] = log(provider, "doc")
    assert batch.operations == operations
    assert [type(value) for value in batch.operations] == [type(value) for value in operations]
    assert json.dumps(batch.operations, default=repr) == json.dumps(operations, default=repr)


# Squashing, through docsync.squash.


def test_squash_folds_the_log_into_the_snapshot(provider):
    for n in range(1, 4):
        append(provider, "doc", f"op{n}")
    result = squash_document(provider, registry(), "doc")
    assert result == SquashResult("doc", 3, 3)
    stored = record(provider, "doc")
    assert (stored.serialized_doc, stored.clock, stored.latest_clock) == (
        ["op1", "op2", "op3"],
        3,
        3,
    )
    assert log(provider, "doc") == []
    append(provider, "doc", "op4")
    assert squash_document(provider, registry(), "doc") == SquashResult("doc", 4, 1)
    assert record(provider, "doc").serialized_doc == ["op1", "op2", "op3", "op4"]


def test_squash_with_nothing_to_do_returns_none(provider):
    assert squash_document(provider, registry(), "nope") is None
    with provider.transaction("readwrite", "doc", doc_type="list") as tx:
        tx.save_serialized_doc(["a"], 1)
    assert squash_document(provider, registry(), "doc") is None
    append(provider, "untyped", "a")  # "list" has a binding, other types none
    assert squash_document(provider, BindingRegistry(), "untyped") is None
    assert record(provider, "untyped").pending == 1


def test_squash_never_loses_a_batch_appended_while_folding(provider):
    append(provider, "doc", "a")
    append(provider, "doc", "b")
    binding = HookedListBinding(lambda: append(provider, "doc", "late"))
    assert squash_document(provider, registry(binding), "doc") == SquashResult("doc", 2, 2)
    stored = record(provider, "doc")
    assert (stored.serialized_doc, stored.clock, stored.latest_clock) == (["a", "b"], 2, 3)
    assert log(provider, "doc") == [Batch(3, ["late"])]
    squash_document(provider, registry(), "doc")
    assert record(provider, "doc").serialized_doc == ["a", "b", "late"]


def test_squash_gives_up_when_another_squash_got_there_first(provider):
    append(provider, "doc", "a")
    binding = HookedListBinding(lambda: squash_document(provider, registry(), "doc"))
    assert squash_document(provider, registry(binding), "doc") is None
    stored = record(provider, "doc")
    assert (stored.serialized_doc, stored.clock, stored.pending) == (["a"], 1, 0)


def test_squash_gives_up_when_the_document_was_deleted_meanwhile(provider):
    append(provider, "doc", "a")

    def delete():
        with provider.transaction("readwrite", "doc") as tx:
            tx.delete_doc()

    assert squash_document(provider, registry(HookedListBinding(delete)), "doc") is None
    stored = record(provider, "doc")
    assert stored.deleted and stored.serialized_doc is None


def test_a_failing_squash_changes_nothing(provider):
    append(provider, "doc", "a")
    append(provider, "doc", "boom")
    before = (record(provider, "doc"), log(provider, "doc"))
    with pytest.raises(ValueError, match="boom"):
        squash_document(provider, registry(), "doc")
    assert (record(provider, "doc"), log(provider, "doc")) == before


def test_record_squash_failure_is_accepted_in_readwrite(provider):
    append(provider, "doc", "a")
    with provider.transaction("readwrite", "doc") as tx:
        tx.record_squash_failure("ValueError: bad")
        tx.record_squash_failure(None)
    assert record(provider, "doc").pending == 1


def test_document_ids_are_compared_exactly(provider):
    ids = ["Doc", "doc", "doc ", "dóc", "d" * 255]
    assert [append(provider, doc_id, doc_id) for doc_id in ids] == [1] * len(ids)
    assert [log(provider, doc_id) for doc_id in ids] == [[Batch(1, [doc_id])] for doc_id in ids]


# Syncs, through docsync.sync (which a provider may answer in one step).


def sync(provider, doc_id, operations=(), clock=0, serialized=None, origin=ORIGIN, **kwargs):
    req = SyncRequest("list", doc_id, list(operations), serialized, clock)
    return sync_document(provider, req, origin, registry(), **kwargs)


def test_sync_creates_appends_and_answers_what_the_client_lacks(provider, user_id):
    origin = Origin(user_id=user_id, device_id="d", client_id="c")
    assert sync(provider, "doc", ["a"], 0, origin=origin) == SyncOutcome([], None, 1, 1)
    assert record(provider, "doc").owner_id == user_id
    assert sync(provider, "doc", ["b"], 1) == SyncOutcome([], None, 2, 2)
    # Behind by two batches: it gets them, never its own.
    assert sync(provider, "doc", ["c"], 0) == SyncOutcome(["a", "b"], None, 3, 3)
    assert sync(provider, "doc", [], 1) == SyncOutcome(["b", "c"], None, 3, 3)
    assert sync(provider, "doc", [], 3) == SyncOutcome([], None, 3, 3)
    assert log(provider, "doc") == [Batch(1, ["a"]), Batch(2, ["b"]), Batch(3, ["c"])]


def test_a_pull_of_a_missing_document_creates_nothing(provider):
    assert sync(provider, "nope") == SyncOutcome([], None, 0, 0)
    assert record(provider, "nope") is None


def test_sync_sends_the_snapshot_unless_the_client_has_it(provider):
    for value in ("a", "b", "c"):
        sync(provider, "doc", [value], 0)
    squash_document(provider, registry(), "doc")
    sync(provider, "doc", ["d"], 3)
    snapshot = ["a", "b", "c"]
    # Without a document of its own the client gets the snapshot and the rest.
    assert sync(provider, "doc", [], 0) == SyncOutcome(["d"], snapshot, 4, 1)
    assert sync(provider, "doc", ["e"], 0) == SyncOutcome(["d"], snapshot, 5, 2)
    # With its document at (or after) the snapshot's clock: only what follows.
    assert sync(provider, "doc", [], 3, serialized=["x"]) == SyncOutcome(["d", "e"], None, 5, 2)
    assert sync(provider, "doc", ["f"], 4, ["x"]) == SyncOutcome(["e"], None, 6, 3)
    # With an older document: the snapshot again.
    assert sync(provider, "doc", [], 1, serialized=["x"]) == SyncOutcome(
        ["d", "e", "f"], snapshot, 6, 3
    )


def test_a_clients_first_snapshot_is_stored(provider):
    assert sync(provider, "doc", [], 0, serialized=["s"]) == SyncOutcome([], None, 0, 0)
    assert record(provider, "doc").serialized_doc == ["s"]
    assert sync(provider, "doc", ["a"], 0, serialized=["s"]) == SyncOutcome([], None, 1, 1)
    assert sync(provider, "doc", [], 0) == SyncOutcome(["a"], ["s"], 1, 1)
    assert sync(provider, "new", ["a"], 0, serialized=["t"]) == SyncOutcome([], None, 1, 1)
    assert record(provider, "new").serialized_doc == ["t"]


def test_sync_refuses_deleted_documents_and_other_types_and_writes_nothing(provider):
    sync(provider, "doc", ["a"])
    req = SyncRequest("other", "doc", ["b"], None, 1)
    with pytest.raises(ValidationError, match="does not match"):
        sync_document(provider, req, ORIGIN, get_binding_registry())
    with pytest.raises(ValidationError, match="does not match"):
        sync_document(
            provider, SyncRequest("other", "doc", [], None, 1), ORIGIN, get_binding_registry()
        )
    with provider.transaction("readwrite", "doc") as tx:
        tx.delete_doc()
    for operations in (["c"], []):
        with pytest.raises(DocumentDeleted):
            sync(provider, "doc", operations, 1)
    assert log(provider, "doc") == [] and record(provider, "doc").latest_clock == 1


def test_sync_expecting_a_new_document_refuses_an_existing_one(provider):
    assert sync(provider, "doc", ["a"], expect_new=True).clock == 1
    with pytest.raises(StorageError, match="created by another request"):
        sync(provider, "doc", ["b"], expect_new=True)
    assert log(provider, "doc") == [Batch(1, ["a"])]


@pytest.mark.parametrize("operations", OPERATIONS[:3], ids=[f"operations{i}" for i in range(3)])
def test_sync_round_trips_operations(provider, operations):
    sync(provider, "doc", operations)
    sync(provider, "doc", ["next"])
    outcome = sync(provider, "doc", [], 0)
    assert outcome.operations == [*operations, "next"]
    assert [type(value) for value in outcome.operations[:-1]] == [type(v) for v in operations]


def test_sync_for_an_owner_refuses_other_owners_documents(provider, user_id):
    origin = Origin(user_id=user_id, device_id="d", client_id="c")
    with pytest.raises(OwnerChanged):
        sync(provider, "doc", ["a"], origin=origin, owner=user_id)
    assert record(provider, "doc") is None
    sync(provider, "doc", ["a"], origin=origin)
    assert sync(provider, "doc", ["b"], 1, origin=origin, owner=user_id).clock == 2
    for operations in (["c"], []):
        with pytest.raises(OwnerChanged):
            sync(provider, "doc", operations, 2, origin=origin, owner="someone else")
    assert [batch.clock for batch in log(provider, "doc")] == [1, 2]


DOCNODE_DOC = "01k00000000000000000000001"


def docnode_sync(provider, operations=(), clock=0, serialized=None):
    from docsync.bindings.docnode import DocNodeBinding

    bindings = BindingRegistry()
    bindings.register("doc", DocNodeBinding(doc_type="doc", nodes={"p": {}}))
    req = SyncRequest("doc", DOCNODE_DOC, list(operations), serialized, clock)
    return sync_document(provider, req, ORIGIN, bindings)


def test_sync_refuses_what_the_binding_could_never_apply_and_stores_nothing(provider):
    """Issue 9 point 1, on every provider (PostgresProvider answers in one step)."""
    from docsync.exceptions import InvalidValue

    good = [[[0, [["n1", "p"]], 0, 0, 0]], {}]
    with pytest.raises(InvalidValue, match=r"^operations\[1\] cannot be applied"):
        docnode_sync(provider, [good, {"hello": "world"}])
    with pytest.raises(InvalidValue, match=r"^serializedDoc is not a snapshot"):
        docnode_sync(provider, [good], serialized=["not-a-ulid", "doc", {}])
    assert record(provider, DOCNODE_DOC) is None
    assert docnode_sync(provider, [good], serialized=[DOCNODE_DOC, "doc", {}]).clock == 1
    with pytest.raises(InvalidValue, match=r"^operations\[0\]"):
        docnode_sync(provider, [[[7]]], clock=1)
    assert [batch.clock for batch in log(provider, DOCNODE_DOC)] == [1]


# Client commits (what recognizes a resend, see docsync.sync).


def test_client_commits_round_trip_per_client_and_document(provider):
    append(provider, "doc", "a")
    append(provider, "other", "a")
    with provider.transaction("readwrite", "doc") as tx:
        assert tx.get_client_commit("c1") is None
        tx.save_client_commit("c1", ClientCommit((1,), 1, "d1"))
        tx.save_client_commit("C1", ClientCommit((1, 3), 2, "d2"))
        assert tx.get_client_commit("c1") == ClientCommit((1,), 1, "d1")
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_client_commit("c1", ClientCommit((4, 9), 5, "d3"))
    with provider.transaction("readonly", "doc") as tx:
        assert tx.get_client_commit("c1") == ClientCommit((4, 9), 5, "d3")
        assert tx.get_client_commit("C1") == ClientCommit((1, 3), 2, "d2")
        assert tx.get_client_commit("c1 ") is None
    with provider.transaction("readonly", "other") as tx:
        assert tx.get_client_commit("c1") is None
    with provider.transaction("readonly", "missing") as tx:
        assert tx.get_client_commit("c1") is None


def test_client_commits_roll_back_survive_squash_and_go_with_delete(provider):
    append(provider, "doc", ["a"])
    with pytest.raises(Boom), provider.transaction("readwrite", "doc") as tx:
        tx.save_client_commit("c1", ClientCommit((1,), 1, "lost"))
        raise Boom()
    with provider.transaction("readonly", "doc") as tx:
        assert tx.get_client_commit("c1") is None
        with pytest.raises(RuntimeError):
            tx.save_client_commit("c1", ClientCommit((1,), 1, "d"))
    with provider.transaction("readwrite", "doc") as tx:
        tx.save_client_commit("c1", ClientCommit((1,), 1, "d"))
    assert squash_document(provider, registry(), "doc") == SquashResult("doc", 1, 1)
    with provider.transaction("readonly", "doc") as tx:
        assert tx.get_client_commit("c1") == ClientCommit((1,), 1, "d")
    with provider.transaction("readwrite", "doc") as tx:
        assert tx.delete_doc()
        assert tx.get_client_commit("c1") is None


# Resends (docsync.sync): exactly once on every provider.


def sync_as(provider, operations, clock=0, client="client-1", serialized_doc=None):
    req = SyncRequest("list", "doc", list(operations), serialized_doc, clock)
    origin = Origin(user_id=None, device_id=f"dev-{client}", client_id=client)
    return sync_document(provider, req, origin, registry())


def stored(provider) -> list:
    rec = record(provider, "doc")
    logged = [op for batch in log(provider, "doc") for op in batch.operations]
    return list(rec.serialized_doc or []) + logged


def test_a_resend_of_an_unacknowledged_sync_is_stored_once(provider):
    sync_as(provider, ["x1"], client="other")
    first = sync_as(provider, ["a", "b"], clock=1)  # committed; the ack is lost
    sync_as(provider, ["x2"], client="other")
    again = sync_as(provider, ["a", "b"], clock=1)
    assert stored(provider) == ["x1", "a", "b", "x2"]
    assert (first.clock, first.operations) == (2, [])
    # Everything up to the latest clock, without the client's own batch.
    assert (again.clock, again.operations, again.serialized_doc) == (3, ["x2"], None)


def test_a_resend_with_operations_typed_meanwhile_stores_only_those(provider):
    sync_as(provider, [["a"]], clock=0)
    sync_as(provider, ["x"], client="other")
    res = sync_as(provider, [["a"], "b", "c"], clock=0)
    assert stored(provider) == [["a"], "x", "b", "c"]
    assert (res.clock, res.operations) == (3, ["x"])
    # Lost again: the next resend covers both batches.
    res = sync_as(provider, [["a"], "b", "c", "d"], clock=0)
    assert stored(provider) == [["a"], "x", "b", "c", "d"]
    assert (res.clock, res.operations) == (4, ["x"])
    res = sync_as(provider, [["a"], "b", "c", "d"], clock=0)
    assert stored(provider) == [["a"], "x", "b", "c", "d"]
    assert (res.clock, res.operations) == (4, ["x"])


def test_a_resend_after_a_squash_gets_the_snapshot_and_is_not_stored(provider):
    sync_as(provider, ["a"], clock=0)
    sync_as(provider, ["x"], client="other")
    squash_document(provider, registry(), "doc")
    res = sync_as(provider, ["a"], clock=0)
    assert stored(provider) == ["a", "x"]
    assert (res.clock, res.serialized_doc, res.operations) == (2, ["a", "x"], [])


def test_binary_operations_are_recognized_too(provider):
    sync_as(provider, [b"\x00\x01", "t"])
    assert sync_as(provider, [b"\x00\x01", "t"]).clock == 1
    assert sync_as(provider, [b"\x00\x02", "t"]).clock == 2
    assert stored(provider) == [b"\x00\x01", "t", b"\x00\x02", "t"]


@pytest.mark.parametrize(
    "client, operations, clock",
    [
        ("other", ["a"], 0),  # another client sends the same operations
        ("client-1", ["a"], 1),  # the client saw its batch acknowledged (clock 1)
        ("client-1", ["b"], 0),  # different operations
        ("client-1", ["b", "a"], 0),  # the same ones, not as a prefix
        ("client-1", [["a"]], 0),  # a different value
    ],
)
def test_what_is_not_a_resend_is_stored(provider, client, operations, clock):
    sync_as(provider, ["a"])
    res = sync_as(provider, operations, clock=clock, client=client)
    assert res.clock == 2
    assert stored(provider) == ["a", *operations]


def test_only_the_last_stored_operations_count(provider):
    sync_as(provider, ["a"])
    sync_as(provider, ["b"], clock=1)
    assert sync_as(provider, ["a"], clock=0).clock == 3  # forgotten: stored again
    assert stored(provider) == ["a", "b", "a"]


# History (docsync.history): squashing keeps what it folds.


def fill(provider, doc_id: str, count: int, squash_every: int, origin=ORIGIN) -> None:
    for n in range(1, count + 1):
        append(provider, doc_id, f"op{n}", origin=origin)
        if n % squash_every == 0:
            squash_document(provider, registry(), doc_id)


def test_squash_moves_batches_to_history_with_their_origin(provider, user_id):
    origin = Origin(user_id=user_id, device_id="laptop", client_id="tab-1")
    fill(provider, "doc", 5, 3, origin=origin)
    assert [b.clock for b in log(provider, "doc")] == [4, 5]  # the log stays short
    with provider.transaction("readonly", "doc") as tx:
        history = tx.get_history()
        versions = tx.get_versions(with_snapshot=True)
    assert [(b.clock, b.operations, b.origin) for b in history] == [
        (n, [f"op{n}"], origin) for n in range(1, 6)
    ]
    assert all(b.created_at is not None for b in history)
    assert [(v.clock, v.kind, v.serialized_doc) for v in versions] == [
        (3, "squash", ["op1", "op2", "op3"])
    ]


def test_history_ranges_limits_and_order(provider):
    fill(provider, "doc", 10, 4)
    with provider.transaction("readonly", "doc") as tx:
        assert [b.clock for b in tx.get_history(2, 6)] == [3, 4, 5, 6]
        assert [b.clock for b in tx.get_history(limit=3, newest_first=True)] == [10, 9, 8]
        assert [b.clock for b in tx.get_history(3, 9, limit=2)] == [4, 5]
        assert [v.clock for v in tx.get_versions()] == [8, 4]
        assert [v.clock for v in tx.get_versions(7, limit=1)] == [4]
        assert tx.get_versions(7)[0].serialized_doc is None  # not loaded unless asked


def test_any_clock_is_rebuilt_from_a_version_and_the_batches_after(provider):
    fill(provider, "doc", 12, 5)
    for clock in range(13):
        assert state_at(provider, registry(), "doc", clock) == [
            f"op{n}" for n in range(1, clock + 1)
        ]
    with pytest.raises(InvalidValue, match="clock"):
        state_at(provider, registry(), "doc", 13)
    with pytest.raises(DocumentNotFound):
        state_at(provider, registry(), "nope", 0)


def test_restore_stores_the_old_state_at_a_new_clock(provider, user_id):
    fill(provider, "doc", 6, 4)
    restored = restore_document(provider, registry(), "doc", 3, user_id)
    assert restored == Restored("doc", 3, 7, user_id)
    stored = record(provider, "doc")
    assert (stored.serialized_doc, stored.clock, stored.latest_clock) == (
        ["op1", "op2", "op3"],
        7,
        7,
    )
    assert log(provider, "doc") == []
    # A client at any older clock gets the restored snapshot.
    outcome = sync(provider, "doc", clock=6, serialized=["op1"])
    assert (outcome.serialized_doc, outcome.clock) == (["op1", "op2", "op3"], 7)
    assert sync(provider, "doc", ["op7"], clock=7).clock == 8
    assert state_at(provider, registry(), "doc", 8) == ["op1", "op2", "op3", "op7"]
    assert state_at(provider, registry(), "doc", 6) == [f"op{n}" for n in range(1, 7)]
    entries = document_history(provider, "doc")
    assert [(e.clock, e.kind) for e in entries[:3]] == [(8, "batch"), (7, "restore"), (6, "batch")]
    assert entries[1] == HistoryEntry(
        7, "restore", user_id, None, None, entries[1].created_at, 0, 3, version=True
    )
    assert [e.clock for e in entries] == list(range(8, 0, -1))
    assert entries[-4].version  # clock 4: a squash kept the state there


def test_history_pages_by_clock(provider):
    fill(provider, "doc", 9, 3)
    restore_document(provider, registry(), "doc", 2)
    seen, before = [], None
    while page := document_history(provider, "doc", before_clock=before, limit=4):
        seen += [e.clock for e in page]
        before = page[-1].clock
    assert seen == list(range(10, 0, -1))


def test_restore_refuses_deleted_documents_and_unknown_clocks(provider):
    fill(provider, "doc", 2, 10)
    with pytest.raises(InvalidValue):
        restore_document(provider, registry(), "doc", 5)
    with provider.transaction("readwrite", "doc") as tx:
        tx.delete_doc()
    with pytest.raises(DocumentDeleted):
        restore_document(provider, registry(), "doc", 1)
    with pytest.raises(DocumentDeleted):
        document_history(provider, "doc")


def test_delete_doc_drops_the_history(provider):
    fill(provider, "doc", 4, 2)
    with provider.transaction("readwrite", "doc") as tx:
        tx.delete_doc()
        assert tx.get_history() == [] and tx.get_versions() == []


def test_a_clients_first_snapshot_is_a_version(provider):
    sync(provider, "doc", ["b"], clock=0, serialized=["a"])
    assert state_at(provider, registry(), "doc", 0) == ["a"]
    assert state_at(provider, registry(), "doc", 1) == ["a", "b"]


def test_pruning_keeps_every_clock_from_the_oldest_kept_version(provider):
    fill(provider, "doc", 10, 3)  # versions at 3, 6, 9
    assert prune_document(provider, "doc", {"versions": 5}) == (0, 0)
    assert prune_document(provider, "doc", {"versions": 2}) == (1, 6)
    with provider.transaction("readonly", "doc") as tx:
        assert [v.clock for v in tx.get_versions()] == [9, 6]
        assert [b.clock for b in tx.get_history()] == [7, 8, 9, 10]
    for clock in range(6, 11):
        assert state_at(provider, registry(), "doc", clock)[-1:] == [f"op{clock}"]
    with pytest.raises(HistoryUnavailable):
        state_at(provider, registry(), "doc", 5)
    assert document_history(provider, "doc")[-1].kind == "squash"  # at 6: its batch is gone


def test_pruning_by_age_keeps_the_version_recent_history_builds_on(provider):
    fill(provider, "doc", 7, 3)
    assert prune_document(provider, "doc", {"days": 1}) == (0, 0)
    later = timezone.now() + timedelta(days=2)
    assert prune_document(provider, "doc", {"days": 1}, now=later) == (1, 6)
    assert prune_document(provider, "doc", {"days": 1, "versions": 5}, now=later) == (0, 0)
    assert state_at(provider, registry(), "doc", 7) == [f"op{n}" for n in range(1, 8)]
