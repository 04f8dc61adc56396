"""DocumentPermissionBackend, the DocumentShare model, check docsync.W002, and
django-rules answering instead of the built-in backend."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.checks import run_checks
from django.db import IntegrityError, transaction
from django.test import override_settings

from docsync.checks import check_object_permission_backend
from docsync.models import Document, DocumentShare
from docsync.permissions import DocumentPermissions, authorize

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONS = ("view", "change", "delete")
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@pytest.fixture
def users():
    make = get_user_model().objects.create_user
    return {name: make(name) for name in ("alice", "bob", "carol", "dave", "eve", "gina")}


@pytest.fixture
def doc(users):
    return Document.objects.create(doc_id="d1", owner=users["alice"])


def perms(user, doc):
    user = type(user).objects.get(pk=user.pk)  # fresh: no cached permissions
    return {action for action in ACTIONS if user.has_perm(f"docsync.{action}_document", doc)}


def test_owner_and_roles(users, doc):
    DocumentShare.objects.create(document=doc, user=users["bob"], role="viewer")
    DocumentShare.objects.create(document=doc, user=users["carol"], role="editor")
    DocumentShare.objects.create(document=doc, user=users["dave"], role="manager")
    assert perms(users["alice"], doc) == set(ACTIONS)
    assert perms(users["bob"], doc) == {"view"}
    assert perms(users["carol"], doc) == {"view", "change"}
    assert perms(users["dave"], doc) == set(ACTIONS)
    assert perms(users["eve"], doc) == set()
    other = Document.objects.create(doc_id="d2")
    assert perms(users["dave"], other) == set()  # a share is for one document


def test_group_shares_add_up_with_user_shares(users, doc):
    team = Group.objects.create(name="team")
    users["gina"].groups.add(team)
    DocumentShare.objects.create(document=doc, group=team, role="viewer")
    assert perms(users["gina"], doc) == {"view"}
    DocumentShare.objects.create(document=doc, user=users["gina"], role="editor")
    assert perms(users["gina"], doc) == {"view", "change"}


def test_inactive_users_get_nothing_superusers_everything(users, doc):
    alice = users["alice"]
    alice.is_active = False
    alice.save()
    assert perms(alice, doc) == set()
    root = get_user_model().objects.create_superuser("root")
    assert perms(root, doc) == set(ACTIONS)  # through ModelBackend


def test_model_level_permissions_stay_with_model_backend(users, doc):
    bob = users["bob"]
    assert not bob.has_perm("docsync.view_document")  # the backend answers objects only
    bob.user_permissions.add(Permission.objects.get(codename="view_document"))
    bob = type(bob).objects.get(pk=bob.pk)
    assert bob.has_perm("docsync.view_document")
    assert not bob.has_perm("docsync.view_document", doc)  # ModelBackend: not per object


def test_a_share_is_for_a_user_or_a_group(users, doc):
    team = Group.objects.create(name="team")
    with pytest.raises(IntegrityError), transaction.atomic():
        DocumentShare.objects.create(document=doc, user=users["bob"], group=team)
    with pytest.raises(IntegrityError), transaction.atomic():
        DocumentShare.objects.create(document=doc)
    DocumentShare.objects.create(document=doc, user=users["bob"])
    with pytest.raises(IntegrityError), transaction.atomic():
        DocumentShare.objects.create(document=doc, user=users["bob"], role="editor")


def test_authorize_maps_requests_to_permissions(users, doc):
    DocumentShare.objects.create(document=doc, user=users["bob"], role="viewer")

    def allowed(name, kind, **req):
        user = users[name]
        event = {
            "type": kind,
            "req": {"docId": "d1", **req},
            "userId": str(user.pk),
            "context": {"user_pk": user.pk, "auth": "token"},
        }
        return authorize(event)

    assert allowed("bob", "sync", operations=[], serializedDoc=None)
    assert not allowed("bob", "sync", operations=[1], serializedDoc=None)
    assert allowed("bob", "presence", presence=1)
    assert not allowed("bob", "delete-doc")
    assert allowed("bob", "unsubscribe-doc")
    assert allowed("alice", "delete-doc")
    assert not allowed("eve", "sync", operations=[], serializedDoc=None)
    assert allowed("eve", "unsubscribe-doc")
    # A custom authenticate without user_pk: the userId is the pk, if it is one.
    event = {"type": "sync", "req": {"docId": "d1", "operations": []}, "context": None}
    assert authorize({**event, "userId": str(users["bob"].pk)})
    assert not authorize({**event, "userId": "bob"})


def test_creating_may_require_the_add_permission(users):
    class Strict(DocumentPermissions):
        create_requires_permission = True

    event = {
        "type": "sync",
        "req": {"docId": "new", "operations": [1]},
        "userId": "x",
        "context": {"user_pk": users["eve"].pk},
    }
    assert authorize(event)
    assert not Strict()(event)
    users["eve"].user_permissions.add(Permission.objects.get(codename="add_document"))
    assert Strict()(event)


def test_w002_without_an_object_permission_backend():
    assert check_object_permission_backend(None) == []
    with override_settings(AUTHENTICATION_BACKENDS=[MODEL_BACKEND]):
        [warning] = check_object_permission_backend(None)
        assert warning.id == "docsync.W002"
        assert "W002" in str([m.id for m in run_checks()])
    rules_backend = "rules.permissions.ObjectPermissionBackend"
    with override_settings(AUTHENTICATION_BACKENDS=[MODEL_BACKEND, rules_backend]):
        assert check_object_permission_backend(None) == []
    with override_settings(
        AUTHENTICATION_BACKENDS=[MODEL_BACKEND],
        DOCSYNC={"AUTHORIZE": "docsync.permissions.allow_all"},
    ):
        assert check_object_permission_backend(None) == []


def test_django_rules_instead_of_the_built_in_backend(users, doc):
    """Another object-permission backend decides, through the same has_perm."""
    rules = pytest.importorskip("rules")

    @rules.predicate
    def same_initial(user, document):
        return document is not None and document.doc_id[0] == user.username[0]

    backends = [MODEL_BACKEND, "rules.permissions.ObjectPermissionBackend"]
    rules.add_perm("docsync.view_document", same_initial)
    try:
        with override_settings(AUTHENTICATION_BACKENDS=backends):
            dave = users["dave"]  # "d1" starts with d
            assert perms(dave, doc) == {"view"}
            assert perms(users["alice"], doc) == set()  # owner means nothing to these rules
            event = {
                "type": "sync",
                "req": {"docId": "d1", "operations": []},
                "userId": str(dave.pk),
                "context": {"user_pk": dave.pk, "auth": "token"},
            }
            assert authorize(event)
            assert not authorize({**event, "req": {"docId": "d1", "operations": [1]}})
    finally:
        rules.remove_perm("docsync.view_document")
