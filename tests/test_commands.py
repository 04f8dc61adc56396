"""The docsync_squash and docsync_purge_tombstones management commands."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from docsync.management.commands.docsync_purge_tombstones import parse_age
from docsync.models import Document
from docsync.providers.base import Origin
from docsync.providers.orm import ORMProvider

pytestmark = pytest.mark.django_db(transaction=True)

ORM_SETTINGS = {
    "PROVIDER": "docsync.providers.orm.ORMProvider",
    "BINDINGS": {"list": "tests.bindings.ListBinding"},
}


@pytest.fixture(autouse=True)
def orm_settings():
    with override_settings(DOCSYNC=ORM_SETTINGS):
        yield


@pytest.fixture
def provider() -> ORMProvider:
    return ORMProvider()


def append(provider, doc_id, *values, doc_type="list"):
    with provider.transaction("readwrite", doc_id, doc_type=doc_type) as tx:
        for value in values:
            tx.save_operations([value], Origin())


def delete(provider, doc_id):
    with provider.transaction("readwrite", doc_id) as tx:
        tx.delete_doc()


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot(doc_id):
    return Document.objects.get(doc_id=doc_id).get_snapshot()


def test_squash_named_documents(provider):
    append(provider, "a", 1, 2)
    append(provider, "b", 3)
    append(provider, "c", 4)
    out, _ = run("docsync_squash", "a", "b")
    assert (snapshot("a"), snapshot("b"), snapshot("c")) == ([1, 2], [3], None)
    assert "2/2" in out and "Squashed 2 document(s), folding 3 batch(es)" in out


def test_squash_all_pending_documents_with_a_progress_bar(provider):
    for n in range(12):
        append(provider, f"doc{n}", n)
    append(provider, "gone", 1)
    delete(provider, "gone")
    out, _ = run("docsync_squash", "--all")
    assert [snapshot(f"doc{n}") for n in range(12)] == [[n] for n in range(12)]
    lines = out.splitlines()
    assert lines[-2] == "[" + "#" * 30 + "] 12/12"
    assert all(line.startswith("[") for line in lines[:-1]) and len(lines) <= 31
    assert "Squashed 12 document(s)" in lines[-1]
    out, _ = run("docsync_squash", "--all")
    assert "Squashed 0 document(s)" in out


def test_squash_reports_failures_and_goes_on(provider):
    append(provider, "bad", "boom")
    append(provider, "good", 1)
    with pytest.raises(CommandError, match="1 document"):
        run("docsync_squash", "bad", "good")
    assert snapshot("good") == [1]
    assert Document.objects.get(doc_id="bad").squash_error.startswith("ValueError")


def test_squash_skips_documents_without_a_binding(provider):
    append(provider, "other", 1, doc_type="unknown-type")
    out, _ = run("docsync_squash", "other", "missing")
    assert "Squashed 0 document(s)" in out and "2 had nothing to squash" in out


def test_squash_needs_ids_or_all():
    with pytest.raises(CommandError, match="--all"):
        run("docsync_squash")
    with pytest.raises(CommandError, match="not both"):
        run("docsync_squash", "a", "--all")


def test_squash_all_needs_the_orm_provider():
    with override_settings(DOCSYNC={}):
        with pytest.raises(CommandError, match="InMemoryProvider"):
            run("docsync_squash", "--all")


def test_purge_tombstones_older_than(provider):
    for doc_id in ("old", "new", "alive"):
        append(provider, doc_id, 1)
    delete(provider, "old")
    delete(provider, "new")
    Document.objects.filter(doc_id="old").update(deleted_at=timezone.now() - timedelta(days=40))
    out, _ = run("docsync_purge_tombstones", "--older-than", "30d", "--dry-run")
    assert out.startswith("1 tombstone(s)") and Document.objects.count() == 3
    out, _ = run("docsync_purge_tombstones", "--older-than", "30d")
    assert "Purged 1 tombstone(s)" in out
    assert sorted(Document.objects.values_list("doc_id", flat=True)) == ["alive", "new"]
    run("docsync_purge_tombstones", "--older-than", "0m")
    assert list(Document.objects.values_list("doc_id", flat=True)) == ["alive"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parse_age(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1.5h", "30 days", ""])
def test_parse_age_refuses_other_forms(text):
    with pytest.raises(CommandError, match="30d, 12h, 90m"):
        parse_age(text)


def test_purge_needs_the_orm_provider():
    with override_settings(DOCSYNC={}):
        with pytest.raises(CommandError, match="ORMProvider"):
            run("docsync_purge_tombstones", "--older-than", "1d")


# docsync_prune_history


def squashed(provider, doc_id, rounds):
    from docsync.bindings import get_binding_registry
    from docsync.squash import squash_document

    for n in range(rounds):
        append(provider, doc_id, f"a{n}", f"b{n}")
        squash_document(provider, get_binding_registry(), doc_id)


def history_sizes(provider, doc_id):
    with provider.transaction("readonly", doc_id) as tx:
        return len(tx.get_versions()), len(tx.get_history())


def test_prune_history_keeps_everything_by_default(provider):
    squashed(provider, "doc", 3)
    out, _ = run("docsync_prune_history", "--all")
    assert "all history is kept" in out
    assert history_sizes(provider, "doc") == (3, 6)


def test_prune_history_keeps_the_newest_versions_with_a_progress_bar(provider):
    squashed(provider, "doc", 3)
    squashed(provider, "other", 1)
    with override_settings(DOCSYNC={**ORM_SETTINGS, "HISTORY_RETENTION": {"versions": 2}}):
        out, _ = run("docsync_prune_history", "--all")
    assert "[##############################] 2/2" in out
    assert "Pruned 1 version(s) and 4 batch(es) of history from 1 of 2 document(s)" in out
    assert history_sizes(provider, "doc") == (2, 2)
    assert history_sizes(provider, "other") == (1, 2)


def test_prune_history_by_age_names_documents_or_all(provider):
    squashed(provider, "doc", 2)
    with override_settings(DOCSYNC={**ORM_SETTINGS, "HISTORY_RETENTION": {"days": 1}}):
        with pytest.raises(CommandError, match="or pass --all"):
            run("docsync_prune_history")
        run("docsync_prune_history", "doc")
        assert history_sizes(provider, "doc") == (2, 4)  # nothing is a day old
        Document.objects.get(doc_id="doc").versions.update(
            created_at=timezone.now() - timedelta(days=3)
        )
        run("docsync_prune_history", "doc")
    assert history_sizes(provider, "doc") == (1, 0)
