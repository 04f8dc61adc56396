"""The documents admin, through the test client as a superuser."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from docsync.models import Document, OperationBatch
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:docsync_document_changelist")


@pytest.fixture(autouse=True)
def bindings():
    bindings = {"list": "tests.bindings.ListBinding", "fancy": "tests.bindings.RenderingBinding"}
    with override_settings(DOCSYNC={"BINDINGS": bindings}):
        yield


@pytest.fixture
def provider() -> ORMProvider:
    return ORMProvider()


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(username="alice")


@pytest.fixture
def docs(provider, alice):
    origin = Origin(user_id=str(alice.pk), device_id="alice-laptop", client_id="tab-1")
    with provider.transaction("readwrite", "json-doc", doc_type="list") as tx:
        tx.save_serialized_doc([{"title": "Grocery <list>"}, "milk"], 0, origin)
        tx.save_operations(["eggs"], origin)
        tx.save_operations([{"add": "bread"}], origin)
    with provider.transaction("readwrite", "bytes-doc", doc_type="yjs") as tx:
        tx.save_serialized_doc(b"\x01\x02\x03", 1)
    with provider.transaction("readwrite", "fancy-doc", doc_type="fancy") as tx:
        tx.save_serialized_doc(["a", "b"], 1)
        tx.record_squash_failure("ValueError: broken")
    with provider.transaction("readwrite", "deleted-doc", doc_type="list") as tx:
        tx.save_operations(["x"], origin)
        tx.delete_doc()
    return {doc.doc_id: doc for doc in Document.objects.all()}


def change_url(doc: Document) -> str:
    return reverse("admin:docsync_document_change", args=[doc.pk])


def test_changelist_shows_documents(admin_client, docs):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for doc_id in docs:
        assert doc_id in html
    assert "alice" in html
    assert "delete_selected" not in html  # replaced by the tombstone action
    assert "delete_leaving_tombstone" in html and "squash_now" in html
    rows = {row.doc_id: row for row in response.context["cl"].result_list}
    assert rows["json-doc"].pending == 2
    assert rows["bytes-doc"].snapshot_bytes == 3
    assert rows["fancy-doc"].squash_error


@pytest.mark.parametrize(
    "query, expected",
    [
        ("q=alice", {"json-doc", "deleted-doc"}),
        ("q=bytes", {"bytes-doc"}),
        ("doc_type=fancy", {"fancy-doc"}),
        ("deleted=yes", {"deleted-doc"}),
        ("deleted=no", {"json-doc", "bytes-doc", "fancy-doc"}),
        ("squash_error=yes", {"fancy-doc"}),
        ("o=-5", {"json-doc", "bytes-doc", "fancy-doc", "deleted-doc"}),  # by pending
    ],
)
def test_search_and_filters(admin_client, docs, query, expected):
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert {doc.doc_id for doc in response.context["cl"].result_list} == expected


def test_change_page_shows_the_snapshot_and_pending_batches_read_only(admin_client, docs):
    response = admin_client.get(change_url(docs["json-doc"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "&quot;title&quot;: &quot;Grocery &lt;list&gt;&quot;" in html  # pretty, escaped
    assert "alice-laptop" in html and "tab-1" in html and "bread" in html
    for name in ("snapshot", "latest_clock", "snapshot_clock", "doc_id", "batches-0-clock"):
        assert f'name="{name}"' not in html
    assert 'name="owner"' in html
    assert 'name="batches-0-DELETE"' not in html
    assert 'name="batches-MAX_NUM_FORMS" value="0"' in html  # nothing can be added


def test_change_page_uses_the_binding_rendering(admin_client, docs):
    html = admin_client.get(change_url(docs["fancy-doc"])).content.decode()
    assert "LIST: a | b" in html and "ValueError: broken" in html


def test_change_page_of_a_binary_snapshot(admin_client, docs):
    html = admin_client.get(change_url(docs["bytes-doc"])).content.decode()
    assert "&lt;3 bytes&gt;" in html


def test_saving_the_form_changes_only_the_owner(admin_client, docs, alice, provider):
    doc = docs["bytes-doc"]
    with provider.transaction("readwrite", doc.doc_id) as tx:  # after the page was read
        tx.save_operations(["late"], Origin())
    form = {
        "owner": alice.pk,
        "latest_clock": 999,
        "snapshot_clock": 999,
        "batches-TOTAL_FORMS": 0,
        "batches-INITIAL_FORMS": 0,
        "batches-MIN_NUM_FORMS": 0,
        "batches-MAX_NUM_FORMS": 1000,
        "shares-TOTAL_FORMS": 0,  # the shares inline
        "shares-INITIAL_FORMS": 0,
        "shares-MIN_NUM_FORMS": 0,
        "shares-MAX_NUM_FORMS": 1000,
    }
    response = admin_client.post(change_url(doc), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    doc.refresh_from_db()
    assert (doc.owner, doc.snapshot_clock, doc.latest_clock) == (alice, 1, 2)
    assert doc.get_snapshot() == b"\x01\x02\x03"


def test_squash_now_action(admin_client, docs):
    response = admin_client.post(
        CHANGELIST,
        {"action": "squash_now", "_selected_action": [docs["json-doc"].pk]},
        follow=True,
    )
    assert "Squashed 1 document(s)." in response.content.decode()
    doc = Document.objects.get(doc_id="json-doc")
    assert doc.get_snapshot() == [{"title": "Grocery <list>"}, "milk", "eggs", {"add": "bread"}]
    assert (doc.snapshot_clock, doc.latest_clock, doc.batches.count()) == (2, 2, 0)


def test_squash_now_reports_failures(admin_client, provider, docs):
    with provider.transaction("readwrite", "fancy-doc") as tx:
        tx.save_operations(["boom"], Origin())
    response = admin_client.post(
        CHANGELIST,
        {"action": "squash_now", "_selected_action": [docs["fancy-doc"].pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Squash failed for fancy-doc: ValueError" in html
    assert Document.objects.get(doc_id="fancy-doc").pending == 1


def test_delete_action_leaves_tombstones(admin_client, docs):
    pks = [docs["json-doc"].pk, docs["bytes-doc"].pk]
    response = admin_client.post(
        CHANGELIST, {"action": "delete_leaving_tombstone", "_selected_action": pks}, follow=True
    )
    assert "Deleted 2 document(s); tombstones remain." in response.content.decode()
    for doc in Document.objects.filter(pk__in=pks):
        assert doc.deleted_at is not None and doc.snapshot is None
        assert doc.latest_clock > 0
    assert not OperationBatch.objects.filter(document__pk__in=pks).exists()


def test_delete_button_leaves_a_tombstone(admin_client, docs):
    doc = docs["json-doc"]
    url = reverse("admin:docsync_document_delete", args=[doc.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "leaves a tombstone" in response.content.decode()
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    doc.refresh_from_db()
    assert doc.deleted_at is not None and doc.latest_clock == 2
    assert not doc.batches.exists()


def test_documents_cannot_be_added(admin_client):
    assert admin_client.get(reverse("admin:docsync_document_add")).status_code == 403


def test_batches_are_viewable_but_read_only(admin_client, docs):
    batch = OperationBatch.objects.filter(document__doc_id="json-doc").order_by("clock").first()
    response = admin_client.get(reverse("admin:docsync_operationbatch_changelist"))
    assert response.status_code == 200 and "json-doc" in response.content.decode()
    url = reverse("admin:docsync_operationbatch_change", args=[batch.pk])
    html = admin_client.get(url).content.decode()
    assert "eggs" in html and 'name="clock"' not in html
    assert admin_client.get(reverse("admin:docsync_operationbatch_add")).status_code == 403
    delete_url = reverse("admin:docsync_operationbatch_delete", args=[batch.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert OperationBatch.objects.filter(pk=batch.pk).exists()


def test_changelist_shows_the_clocks(admin_client, docs):
    html = admin_client.get(CHANGELIST).content.decode()
    assert "column-clocks" in html and ">Clocks</a>" in html
    # json-doc: snapshot at clock 0, two batches after it (latest clock 2).
    row = html[html.index("json-doc") :]
    row = row[row.index('class="field-clocks"') : row.index("</tr>")]
    assert row.startswith('class="field-clocks"><span style="white-space: nowrap">2 <small')
    assert "snap&nbsp;0" in row


DOCNODE = {
    "note": {
        "class": "docsync.bindings.docnode.DocNodeBinding",
        "options": {"doc_type": "note", "nodes": {"p": {"text": {"kind": "string"}}}},
    }
}


def test_docnode_batches_read_as_operations(admin_client, provider, alice):
    doc_id = "01kadm1n000000000000000000"
    ops = [
        [[0, [["n1", "p"], ["n2", "p"]], 0, 0, 0], [2, "n2", 0, 0, 0, "n1"], [1, "n1", 0]],
        {"n2": {"text": '"Hi <b>"'}},
    ]
    with provider.transaction("readwrite", doc_id, doc_type="note") as tx:
        tx.save_operations([ops, ["not", "docnode", "ops"]], Origin(user_id=str(alice.pk)))
    with override_settings(DOCSYNC={"BINDINGS": DOCNODE}):
        html = admin_client.get(change_url(Document.objects.get(doc_id=doc_id))).content.decode()
        batch = OperationBatch.objects.get(document__doc_id=doc_id)
        page = admin_client.get(reverse("admin:docsync_operationbatch_change", args=[batch.pk]))
    for text in (html, page.content.decode()):
        assert "insert p n1, p n2 at the end of the root" in text
        assert "move n2 before n1" in text and "delete n1" in text
        assert "n2.text = &quot;Hi &lt;b&gt;&quot;" in text  # escaped
        assert "(not DocNode operations: A DocNode operations value must be" in text


def test_share_inline_picks_users_and_groups_by_name(admin_client, docs):
    html = admin_client.get(change_url(docs["json-doc"])).content.decode()
    assert html.count('class="admin-autocomplete') >= 2  # owner + share rows' template
    for field in ("shares-__prefix__-user", "shares-__prefix__-group", "owner"):
        assert f'name="{field}"' in html
    select = html[html.index('name="shares-__prefix__-user"') - 300 :]
    assert "admin-autocomplete" in select[:600]
    url = reverse("admin:autocomplete")
    params = {"app_label": "docsync", "model_name": "documentshare", "field_name": "user"}
    found = admin_client.get(url, {**params, "term": "ali"}).json()
    assert [item["text"] for item in found["results"]] == ["alice"]


def test_share_inline_falls_back_to_ids_without_a_searchable_user_admin(admin_client, docs):
    from django.contrib import admin as django_admin
    from django.contrib.auth.models import User

    user_admin = django_admin.site._registry[User]
    original = user_admin.search_fields
    user_admin.search_fields = ()
    try:
        html = admin_client.get(change_url(docs["json-doc"])).content.decode()
    finally:
        user_admin.search_fields = original
    user_select = html[html.index('name="shares-__prefix__-user"') - 300 :][:600]
    assert "vForeignKeyRawIdAdminField" in user_select  # the raw-id widget, still usable
    group_select = html[html.index('name="shares-__prefix__-group"') - 300 :][:600]
    assert "admin-autocomplete" in group_select


def test_view_site_lands_on_the_home_page(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/">View site</a>' in html
