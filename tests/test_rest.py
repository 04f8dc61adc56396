"""The REST API (docsync.rest) as a client of it sees it: every endpoint, every error.

DRF's test client against tests.urls (mounted at /api/docsync/), DRF
tokens (and a session), the default authorize and permission backends on
ORMProvider. tests/test_rest_schema.py runs schemathesis against a served
schema.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from docsync.models import Document, DocumentShare

pytestmark = pytest.mark.django_db

BASE = "/api/docsync"
NOT_FOUND = {"detail": "No such document."}


@pytest.fixture(autouse=True)
def orm(settings):
    settings.DOCSYNC = {
        "PROVIDER": "docsync.providers.orm.ORMProvider",
        "BINDINGS": {"doc": "tests.bindings.ListBinding"},
        "SQUASH_THRESHOLD": 3,
    }


@pytest.fixture
def people():
    users = get_user_model().objects
    found = {name: users.create_user(name) for name in ("alice", "bob", "carol", "eve")}
    found["root"] = users.create_superuser("root")
    return found


def as_user(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def alice(people):
    return as_user(people["alice"])


@pytest.fixture
def eve(people):
    return as_user(people["eve"])


def create(client, doc_id="d1", **body):
    answer = client.post(f"{BASE}/documents/", {"id": doc_id, "type": "doc", **body}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def test_credentials_are_required(people):
    assert APIClient().get(f"{BASE}/documents/").status_code == 401
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    answer = wrong.get(f"{BASE}/documents/")
    assert (answer.status_code, answer.json()) == (401, {"detail": "Invalid token."})


def test_create_retrieve_apply_and_the_state_folds_the_log(alice, people):
    created = create(alice, operations=["a"])
    assert created["id"] == "d1"
    assert (created["type"], created["owner"], created["clock"]) == ("doc", people["alice"].pk, 1)
    assert created["state"] == ["a"]
    answer = alice.post(
        f"{BASE}/documents/d1/operations/", {"operations": ["b", "c"]}, format="json"
    )
    assert (answer.status_code, answer.json()) == (201, {"id": "d1", "type": "doc", "clock": 2})
    detail = alice.get(f"{BASE}/documents/d1/").json()
    assert (detail["state"], detail["clock"], detail["snapshot_clock"]) == (["a", "b", "c"], 2, 0)
    assert detail["folded"] is True and detail["deleted"] is False


def test_create_makes_an_id_and_refuses_one_taken(alice, eve):
    created = alice.post(f"{BASE}/documents/", {"type": "doc"}, format="json").json()
    assert len(created["id"]) == 26 and created["id"] == created["id"].lower()
    assert created["state"] == [] and created["clock"] == 0
    create(alice, "d1")
    answer = alice.post(f"{BASE}/documents/", {"id": "d1", "type": "doc"}, format="json")
    assert (answer.status_code, answer.json()) == (409, {"detail": "Document 'd1' already exists."})
    answer = eve.post(f"{BASE}/documents/", {"id": "d1", "type": "doc"}, format="json")
    assert answer.status_code == 403


def test_bad_requests_name_the_field(alice):
    answer = alice.post(f"{BASE}/documents/", {"id": "x"}, format="json")
    assert (answer.status_code, list(answer.json())) == (400, ["type"])
    answer = alice.post(f"{BASE}/documents/", {"type": "plain"}, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"snapshot": ["snapshot is required: no binding serves 'plain'."]}
    create(alice)
    answer = alice.post(f"{BASE}/documents/d1/operations/", {"operations": []}, format="json")
    assert (answer.status_code, list(answer.json())) == (400, ["operations"])
    deep: list = []
    for _ in range(300):
        deep = [deep]
    answer = alice.post(f"{BASE}/documents/d1/operations/", {"operations": [deep]}, format="json")
    assert (answer.status_code, list(answer.json())) == (400, ["operations"])
    assert answer.json()["operations"][0].startswith("operations[0]")
    answer = alice.get(f"{BASE}/documents/", {"owner": "nobody"})
    assert answer.json() == {"owner": ["'nobody' is not a user id."]}
    answer = alice.get(f"{BASE}/documents/", {"updated_after": "yesterday"})
    assert (answer.status_code, list(answer.json())) == (400, ["updated_after"])


def test_a_stranger_cannot_tell_a_private_document_from_a_missing_one(alice, eve):
    create(alice)
    for doc_id in ("d1", "missing"):
        for method, path, body in (
            ("get", "", None),
            ("delete", "", None),
            ("post", "operations/", {"operations": ["x"]}),
            ("get", "shares/", None),
            ("post", "shares/", {"user": 1, "role": "viewer"}),
            ("get", "presence/", None),
        ):
            answer = getattr(eve, method)(f"{BASE}/documents/{doc_id}/{path}", body, format="json")
            assert (answer.status_code, answer.json()) == (404, NOT_FOUND), (doc_id, method, path)


def test_roles_decide_as_over_the_socket(alice, people):
    create(alice)
    document = Document.objects.get(doc_id="d1")
    DocumentShare.objects.create(document=document, user=people["bob"], role="viewer")
    bob = as_user(people["bob"])
    assert bob.get(f"{BASE}/documents/d1/").status_code == 200
    answer = bob.post(f"{BASE}/documents/d1/operations/", {"operations": ["b"]}, format="json")
    assert answer.status_code == 403
    assert answer.json() == {"detail": "You may not do this to this document."}
    assert bob.delete(f"{BASE}/documents/d1/").status_code == 403
    root = as_user(people["root"])
    assert (
        root.post(f"{BASE}/documents/d1/operations/", {"operations": ["r"]}, format="json").json()[
            "clock"
        ]
        == 1
    )


def test_deleted_documents_are_409_for_those_who_may_read(alice, eve):
    create(alice, operations=["a"])
    assert alice.delete(f"{BASE}/documents/d1/").status_code == 204
    again = alice.delete(f"{BASE}/documents/d1/")
    assert (again.status_code, again.json()) == (
        409,
        {"detail": "The document was deleted already."},
    )
    answer = alice.get(f"{BASE}/documents/d1/")
    assert answer.status_code == 409
    assert "has been deleted" in answer.json()["detail"]
    answer = alice.post(f"{BASE}/documents/d1/operations/", {"operations": ["b"]}, format="json")
    assert answer.status_code == 409
    assert alice.get(f"{BASE}/documents/d1/shares/").status_code == 409
    assert eve.get(f"{BASE}/documents/d1/").status_code == 404
    assert alice.get(f"{BASE}/documents/").json()["count"] == 0


def test_list_filters_and_pages(alice, people):
    for n in range(5):
        create(alice, f"d{n}")
    alice.post(f"{BASE}/documents/", {"id": "p1", "type": "plain", "snapshot": {}}, format="json")
    bob = as_user(people["bob"])
    create(bob, "b1")
    page = alice.get(f"{BASE}/documents/", {"page_size": 2}).json()
    assert (page["count"], len(page["results"]), page["previous"]) == (6, 2, None)
    assert "page=2" in page["next"]
    assert [d["id"] for d in page["results"]] == ["p1", "d4"]  # most recently changed first
    listed = alice.get(f"{BASE}/documents/", {"type": "plain"}).json()["results"]
    assert [d["id"] for d in listed] == ["p1"]
    root = as_user(people["root"])
    owned = root.get(f"{BASE}/documents/", {"owner": people["bob"].pk}).json()["results"]
    assert [d["id"] for d in owned] == ["b1"]
    moment = Document.objects.get(doc_id="d4").updated_at.isoformat()
    later = alice.get(f"{BASE}/documents/", {"updated_after": moment}).json()["results"]
    assert [d["id"] for d in later] == ["p1"]
    earlier = alice.get(f"{BASE}/documents/", {"updated_before": moment}).json()["results"]
    assert [d["id"] for d in earlier] == ["d3", "d2", "d1", "d0"]
    assert alice.get(f"{BASE}/documents/", {"page": 9}).status_code == 404


def test_shares_list_add_change_and_remove(alice, people):
    create(alice)
    team = Group.objects.create(name="team")
    bob_pk, carol = people["bob"].pk, as_user(people["carol"])
    url = f"{BASE}/documents/d1/shares/"
    answer = alice.post(url, {"user": bob_pk, "role": "viewer"}, format="json")
    assert answer.status_code == 201
    share = answer.json()
    assert (share["user"], share["group"], share["role"]) == (bob_pk, None, "viewer")
    grouped = alice.post(url, {"group": team.pk, "role": "editor"}, format="json").json()
    assert alice.post(url, {"user": bob_pk}, format="json").status_code == 409
    both = alice.post(url, {"user": bob_pk, "group": team.pk}, format="json")
    assert (both.status_code, list(both.json())) == (400, ["user"])
    assert alice.post(url, {"user": 10**6}, format="json").status_code == 400
    bad_role = alice.post(url, {"user": people["carol"].pk, "role": "owner"}, format="json")
    assert (bad_role.status_code, list(bad_role.json())) == (400, ["role"])
    assert [s["id"] for s in alice.get(url).json()] == [share["id"], grouped["id"]]
    bob = as_user(people["bob"])
    assert bob.get(url).status_code == 200  # a viewer may see who else may
    assert bob.post(url, {"user": people["carol"].pk}, format="json").status_code == 403
    assert carol.get(url).status_code == 404
    changed = alice.patch(f"{url}{share['id']}/", {"role": "manager"}, format="json")
    assert (changed.status_code, changed.json()["role"]) == (200, "manager")
    # Now a manager, bob may share it on.
    assert bob.post(url, {"user": people["carol"].pk}, format="json").status_code == 201
    assert carol.get(f"{BASE}/documents/d1/").status_code == 200
    assert alice.patch(f"{url}{share['id']}/", {"role": "x"}, format="json").status_code == 400
    assert alice.delete(f"{url}{share['id']}/").status_code == 204
    assert alice.delete(f"{url}{share['id']}/").status_code == 404
    assert bob.get(url).status_code == 404


def test_presence_lists_who_is_connected(alice):
    create(alice)
    answer = alice.get(f"{BASE}/documents/d1/presence/")
    assert (answer.status_code, answer.json()) == (200, {"members": [], "presence": {}})


def test_session_authentication(people):
    client = APIClient()
    client.force_login(people["alice"])
    create(client)
    assert client.get(f"{BASE}/documents/d1/").json()["owner"] == people["alice"].pk


def test_the_schema_and_its_ui_are_served_without_a_cdn(alice):
    schema = alice.get(f"{BASE}/schema/", {"format": "json"}).json()
    assert schema["openapi"].startswith("3.")
    assert sorted(schema["paths"]) == [
        f"{BASE}/documents/",
        f"{BASE}/documents/{{doc_id}}/",
        f"{BASE}/documents/{{doc_id}}/history/",
        f"{BASE}/documents/{{doc_id}}/history/{{clock}}/",
        f"{BASE}/documents/{{doc_id}}/operations/",
        f"{BASE}/documents/{{doc_id}}/presence/",
        f"{BASE}/documents/{{doc_id}}/restore/",
        f"{BASE}/documents/{{doc_id}}/shares/",
        f"{BASE}/documents/{{doc_id}}/shares/{{share_id}}/",
    ]
    page = APIClient().get(f"{BASE}/schema/ui/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # The page's CSRF token is random letters and digits: "cdn" turns up in
    # about one in 300 of them. What the page loads is checked without it.
    token = re.search(r'request\.headers\["[^"]+"\] = "([^"]*)";', html)
    assert token is not None
    html = html.replace(token.group(1), "")
    assert "https://" not in html and "cdn" not in html.lower()


def test_history_state_at_a_clock_and_restore(alice, people):
    create(alice, operations=["a"])
    url = f"{BASE}/documents/d1"
    for value in ("b", "c", "d"):
        alice.post(f"{url}/operations/", {"operations": [value]}, format="json")
    page = alice.get(f"{url}/history/", {"limit": 2}).json()
    assert [(e["clock"], e["kind"], e["operations"]) for e in page["results"]] == [
        (4, "batch", 1),
        (3, "batch", 1),
    ]
    assert page["results"][0]["user_id"] == str(people["alice"].pk)
    assert page["results"][0]["device_id"] == "server"
    older = alice.get(f"{url}/history/", {"before_clock": page["next_before_clock"]}).json()
    assert [e["clock"] for e in older["results"]][:2] == [2, 1]
    assert alice.get(f"{url}/history/2/").json() == {"clock": 2, "state": ["a", "b"]}
    answer = alice.get(f"{url}/history/9/")
    assert (answer.status_code, list(answer.json())) == (400, ["clock"])
    assert alice.get(f"{url}/history/", {"limit": 0}).status_code == 400

    bob = as_user(people["bob"])
    DocumentShare.objects.create(
        document=Document.objects.get(doc_id="d1"), user=people["bob"], role="viewer"
    )
    assert bob.get(f"{url}/history/").status_code == 200
    assert bob.post(f"{url}/restore/", {"clock": 1}, format="json").status_code == 403
    assert as_user(people["eve"]).get(f"{url}/history/").status_code == 404

    restored = alice.post(f"{url}/restore/", {"clock": 2}, format="json")
    assert (restored.status_code, restored.json()) == (
        201,
        {"id": "d1", "clock": 2, "new_clock": 5},
    )
    assert alice.get(f"{url}/").json()["state"] == ["a", "b"]
    newest = alice.get(f"{url}/history/", {"limit": 1}).json()["results"][0]
    assert (newest["clock"], newest["kind"], newest["restored_from"]) == (5, "restore", 2)
    bad = alice.post(f"{url}/restore/", {"clock": -1}, format="json")
    assert (bad.status_code, list(bad.json())) == (400, ["clock"])
