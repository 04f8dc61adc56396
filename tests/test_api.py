"""docsync.api: reading, listing, writing and deleting documents from server code.

In process, on ORMProvider over SQLite (the default authorize fetches users
from the "default" database), with the default authorize and permission
backends; tests/test_api_e2e.py drives the same API on PostgreSQL from
``manage.py shell`` while socket clients are connected.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import override_settings

from docsync import api, signals
from docsync.exceptions import DocumentDeleted, PermissionDenied, ValidationError
from docsync.models import Document, DocumentShare, OperationBatch
from docsync.permissions import allow_all, authorize
from docsync.providers.orm import ORMProvider
from docsync.server import DocSyncServer
from tests.bindings import ListBinding
from tests.conftest_db import db_param, require_database

ALIASES = [db_param("default", "default", id="sqlite")]


@pytest.fixture(params=ALIASES)
def alias(request):
    require_database(request.param)
    return request.param


@pytest.fixture
def server(alias):
    return DocSyncServer(
        provider=ORMProvider(using=alias),
        authorize=authorize,
        doc_binding={"doc": ListBinding()},
        squash_threshold=3,
    )


@pytest.fixture
def people(alias):
    users = get_user_model().objects.db_manager(alias)
    found = {name: users.create_user(name) for name in ("alice", "bob", "carol", "eve", "gina")}
    found["root"] = users.create_superuser("root")
    team = Group.objects.using(alias).create(name="team")
    found["gina"].groups.add(team)
    found["team"] = team
    return found


def share(alias, doc_id, role, **who):
    document = Document.objects.using(alias).get(doc_id=doc_id)
    return DocumentShare.objects.using(alias).create(document=document, role=role, **who)


def test_apply_creates_a_document_owned_by_the_user_and_read_folds_the_log(server, people, alias):
    alice = people["alice"]
    assert api.apply_operations("d1", ["a"], user=alice, doc_type="doc", server=server).clock == 1
    applied = api.apply_operations("d1", ["b", "c"], user=alice, server=server)
    assert (applied.doc_type, applied.clock) == ("doc", 2)
    state = api.get_state("d1", user=alice, server=server)
    assert (state.state, state.clock, state.snapshot_clock, state.folded) == (
        ["a", "b", "c"],
        2,
        0,
        True,
    )
    assert state.owner_id == str(alice.pk)
    batch = OperationBatch.objects.using(alias).get(document__doc_id="d1", clock=2)
    assert (batch.user, batch.device_id, batch.client_id) == (alice, "server", "")
    # Reading wrote nothing: the log is still there.
    assert Document.objects.using(alias).get(doc_id="d1").snapshot_clock == 0


def test_a_stranger_cannot_tell_a_private_document_from_a_missing_one(server, people):
    api.apply_operations("d1", ["a"], user=people["alice"], doc_type="doc", server=server)
    for doc_id in ("d1", "missing"):
        with pytest.raises(PermissionDenied) as refused:
            api.get_state(doc_id, user=people["eve"], server=server)
        assert refused.value.message == "Access denied"
        with pytest.raises(PermissionDenied):
            api.delete_document(doc_id, user=people["eve"], server=server)
    with pytest.raises(PermissionDenied):
        api.apply_operations("d1", ["x"], user=people["eve"], server=server)


def test_roles_decide_as_over_the_socket(server, people, alias):
    api.apply_operations("d1", ["a"], user=people["alice"], doc_type="doc", server=server)
    share(alias, "d1", "viewer", user=people["bob"])
    share(alias, "d1", "editor", group=people["team"])
    assert api.get_state("d1", user=people["bob"], server=server).state == ["a"]
    with pytest.raises(PermissionDenied):
        api.apply_operations("d1", ["b"], user=people["bob"], server=server)
    assert api.apply_operations("d1", ["g"], user=people["gina"], server=server).clock == 2
    with pytest.raises(PermissionDenied):
        api.delete_document("d1", user=people["gina"], server=server)
    assert api.may(people["bob"], "read", "d1", server=server)
    assert not api.may(people["bob"], "write", "d1", server=server)
    assert api.may(people["root"], "delete", "d1", server=server)


def test_visible_documents_are_those_authorize_lets_the_user_read(server, people, alias):
    for doc_id, owner in (("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("c1", "carol")):
        api.apply_operations(doc_id, ["x"], user=people[owner], doc_type="doc", server=server)
    share(alias, "a2", "viewer", group=people["team"])
    share(alias, "c1", "editor", user=people["bob"])
    api.delete_document("a1", user=people["alice"], server=server)

    def visible(name):
        found = api.visible_documents(people[name], server=server)
        return sorted(found.values_list("doc_id", flat=True))

    assert visible("alice") == ["a2"]
    assert visible("bob") == ["b1", "c1"]
    assert visible("gina") == ["a2"]
    assert visible("eve") == []
    assert visible("root") == ["a2", "b1", "c1"]
    # Any other authorize is asked document by document, with the same answers.
    asking = DocSyncServer(
        provider=server.provider,
        authorize=lambda event: authorize(event),
        doc_binding=ListBinding(),
    )
    for name in ("alice", "bob", "gina", "eve", "root"):
        found = api.visible_documents(people[name], server=asking).values_list("doc_id", flat=True)
        assert sorted(found) == visible(name), name


def test_open_documents_are_listed_for_everyone_until_shared(server, people, alias):
    api.apply_operations("open", ["x"], user=people["alice"], doc_type="doc", server=server)
    api.apply_operations("shared", ["x"], user=people["alice"], doc_type="doc", server=server)
    share(alias, "shared", "viewer", user=people["bob"])
    with override_settings(DOCSYNC={"OPEN_DOCUMENTS": True}):
        found = api.visible_documents(people["eve"], server=server).values_list("doc_id", flat=True)
        assert list(found) == ["open"]
        assert api.get_state("open", user=people["eve"], server=server).state == ["x"]


def test_deleted_documents_answer_document_deleted_to_those_who_may_read(server, people):
    api.apply_operations("d1", ["a"], user=people["alice"], doc_type="doc", server=server)
    assert api.delete_document("d1", user=people["alice"], server=server) is True
    assert api.delete_document("d1", user=people["alice"], server=server) is False
    with pytest.raises(DocumentDeleted):
        api.get_state("d1", user=people["alice"], server=server)
    with pytest.raises(DocumentDeleted):
        api.apply_operations("d1", ["b"], user=people["alice"], server=server)
    with pytest.raises(PermissionDenied):
        api.get_state("d1", user=people["eve"], server=server)


def test_refusals_name_the_field(server, people):
    alice = people["alice"]
    with pytest.raises(ValidationError, match="type is required"):
        api.apply_operations("new", ["a"], user=alice, server=server)
    with pytest.raises(ValidationError, match="operations must be a non-empty list"):
        api.apply_operations("new", [], user=alice, doc_type="doc", server=server)
    api.apply_operations("d1", ["a"], user=alice, doc_type="doc", server=server)
    with pytest.raises(ValidationError, match="does not match document"):
        api.apply_operations("d1", ["a"], user=alice, doc_type="other", server=server)
    deep: list = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ValidationError, match=r"^operations\[0\]"):
        api.apply_operations("d1", [deep], user=alice, server=server)


def test_inside_atomic_nothing_is_announced_before_commit_and_a_rollback_leaves_nothing(
    server, people, alias
):
    edits = []

    def receiver(sender, **kwargs):
        edits.append(kwargs)

    signals.doc_edited.connect(receiver)
    try:
        with transaction.atomic(using=alias):
            api.apply_operations("d1", ["a"], user=people["alice"], doc_type="doc", server=server)
            assert edits == []  # not before commit
        assert [(e["doc_id"], e["clock"], e["operations"], e["user"]) for e in edits] == [
            ("d1", 1, ["a"], people["alice"])
        ]
        assert edits[0]["document"].doc_id == "d1"
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):
            api.apply_operations("d1", ["b"], user=people["alice"], server=server)
            raise RuntimeError("rolled back")
        assert len(edits) == 1
        assert api.get_state("d1", user=people["alice"], server=server).state == ["a"]
    finally:
        signals.doc_edited.disconnect(receiver)


def test_listeners_hear_server_edits_and_the_log_is_squashed_past_the_threshold(
    server, people, alias
):
    heard = []
    server.on_doc_edit(heard.append)
    for n in range(4):
        api.apply_operations("d1", [n], user=people["alice"], doc_type="doc", server=server)
    assert [(e.doc_id, e.clock, e.device_id) for e in heard] == [
        ("d1", n, "server") for n in range(1, 5)
    ]
    document = Document.objects.using(alias).get(doc_id="d1")
    assert (document.snapshot_clock, document.latest_clock) == (3, 4)  # squashed at 3 pending
    assert api.get_state("d1", user=people["alice"], server=server).state == [0, 1, 2, 3]


def test_trusted_code_and_custom_user_ids(alias, people):
    server = DocSyncServer(
        provider=ORMProvider(using=alias), authorize=allow_all, doc_binding=ListBinding()
    )
    applied = api.apply_operations("sys", ["a"], user=None, doc_type="doc", server=server)
    assert applied.clock == 1
    assert Document.objects.using(alias).get(doc_id="sys").owner is None
    assert api.get_state("sys", user="someone", server=server).state == ["a"]
    assert list(api.visible_documents(None, server=server).values_list("doc_id", flat=True)) == [
        "sys"
    ]


@pytest.mark.django_db
def test_listing_needs_the_orm_provider():
    from docsync.providers.memory import InMemoryProvider

    server = DocSyncServer(provider=InMemoryProvider(), authorize=allow_all)
    with pytest.raises(ValidationError, match="needs ORMProvider"):
        api.visible_documents(None, server=server)


def test_history_and_restore_are_authorized_like_reads_and_writes(server, people, alias):
    for value in ("a", "b", "c"):
        api.apply_operations("d1", [value], user=people["alice"], doc_type="doc", server=server)
    share(alias, "d1", "viewer", user=people["bob"])
    entries = api.history("d1", user=people["bob"], server=server)
    assert [(e.clock, e.kind, e.device_id) for e in entries] == [
        (3, "batch", "server"),
        (2, "batch", "server"),
        (1, "batch", "server"),
    ]
    assert api.state_at("d1", 1, user=people["bob"], server=server) == ["a"]
    with pytest.raises(PermissionDenied):
        api.restore("d1", 1, user=people["bob"], server=server)
    with pytest.raises(PermissionDenied):
        api.history("d1", user=people["eve"], server=server)
    restored = api.restore("d1", 1, user=people["alice"], server=server)
    assert (restored.clock, restored.new_clock) == (1, 4)
    assert api.get_state("d1", user=people["alice"], server=server).state == ["a"]
