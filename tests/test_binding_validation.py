"""Bindings refuse, at sync time, what a squash could never apply
(``validate_operations`` / ``validate_snapshot``): issue 9 point 1."""

from __future__ import annotations

import pytest

from docsync.bindings.base import BaseBinding, BindingRegistry
from docsync.bindings.docnode import DocNodeBinding
from docsync.exceptions import InvalidValue
from docsync.providers.base import Origin
from docsync.providers.memory import InMemoryProvider
from docsync.requests import SyncRequest
from docsync.sync import sync_document

pycrdt = pytest.importorskip("pycrdt")

from docsync.bindings.yjs import YjsBinding  # noqa: E402

DOC = "01k00000000000000000000001"
ORIGIN = Origin("alice", "dev", "cli")
BATCH = [[[0, [["p1", "p"]], 0, 0, 0]], {"p1": {"text": '"Hello"'}}]


@pytest.fixture
def registry() -> BindingRegistry:
    registry = BindingRegistry()
    registry.register(
        "doc", DocNodeBinding(doc_type="doc", nodes={"doc": {}, "p": {"text": {"kind": "string"}}})
    )
    registry.register("canvas", YjsBinding(roots={"content": "text"}))
    return registry


def sync(provider, registry, doc_type, operations=(), snapshot=None, clock=0, doc=DOC):
    req = SyncRequest(doc_type, doc, list(operations), snapshot, clock)
    return sync_document(provider, req, ORIGIN, registry)


def yjs_update(text: str = "hello") -> bytes:
    doc = pycrdt.Doc()
    doc.get("content", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


@pytest.mark.parametrize(
    "doc_type,operations,field,words",
    [
        ("doc", [{"hello": "world"}], "operations[0]", "[ordered operations, state patch]"),
        ("doc", [BATCH, [[[9]], {}]], "operations[1]", "Operation #0"),
        ("doc", [[[], {"p1": {"text": 5}}]], "operations[0]", "JSON text strings"),
        ("canvas", ["not bytes"], "operations[0]", "must be a Yjs update (bytes)"),
        ("canvas", [yjs_update(), b"\x07\x07\x07"], "operations[1]", "not a valid Yjs update"),
    ],
)
def test_operations_a_squash_could_not_apply_are_refused_and_not_stored(
    registry, doc_type, operations, field, words
):
    provider = InMemoryProvider()
    with pytest.raises(InvalidValue) as info:
        sync(provider, registry, doc_type, operations)
    assert info.value.message.startswith(f"{field} cannot be applied to a {doc_type!r} document")
    assert words in info.value.message
    with provider.transaction("readonly", DOC) as tx:
        assert tx.get_serialized_doc() is None


@pytest.mark.parametrize(
    "doc_type,snapshot,words",
    [
        ("doc", ["not-a-ulid", "doc", {}], "lowercase ULID"),
        ("doc", [DOC, "other", {}], "type"),
        ("canvas", "text", "bytes"),
        ("canvas", b"\xff", "not a valid Yjs update"),
    ],
)
def test_a_first_snapshot_the_binding_cannot_load_is_refused(registry, doc_type, snapshot, words):
    provider = InMemoryProvider()
    with pytest.raises(InvalidValue, match=r"^serializedDoc is not a snapshot of a") as info:
        sync(provider, registry, doc_type, snapshot=snapshot)
    assert words in info.value.message
    with provider.transaction("readonly", DOC) as tx:
        assert tx.get_serialized_doc() is None


def test_valid_values_are_stored_and_the_log_squashes(registry):
    provider = InMemoryProvider()
    assert sync(provider, registry, "doc", [BATCH], snapshot=[DOC, "doc", {}]).clock == 1
    # The snapshot is only checked when it is stored: a later one is not even read.
    assert sync(provider, registry, "doc", [], snapshot="ignored", clock=1).clock == 1
    assert sync(provider, registry, "canvas", [yjs_update()], doc="c1").clock == 1
    from docsync.squash import squash_document

    assert squash_document(provider, registry, DOC).batches == 1
    assert squash_document(provider, registry, "c1").batches == 1


def test_types_without_a_binding_and_the_default_hooks_accept_anything(registry):
    provider = InMemoryProvider()
    assert sync(provider, registry, "free", [{"hello": "world"}], snapshot="x").clock == 1
    assert BaseBinding().validate_operations(object()) is None
    assert BaseBinding().validate_snapshot(object()) is None
