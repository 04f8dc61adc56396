"""Tests for the Yjs binding (docsync.bindings.yjs), with pycrdt and real Yjs."""

from __future__ import annotations

import base64
import importlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

pycrdt = pytest.importorskip("pycrdt")
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText  # noqa: E402

from docsync.bindings.base import BaseBinding, get_binding_registry  # noqa: E402
from docsync.bindings.yjs import MISSING_PYCRDT, YjsBinding, apply_update  # noqa: E402
from tests.node import NODE_CACHE, node_script  # noqa: E402

ROOTS = {"content": "text", "items": "array", "meta": "map"}


def recorder(doc: Doc) -> list[bytes]:
    """Collect the update of every transaction on ``doc``."""
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def content(doc: Doc) -> dict:
    return {
        "content": str(doc.get("content", type=Text)),
        "items": doc.get("items", type=Array).to_py(),
        "meta": doc.get("meta", type=Map).to_py(),
    }


def load(*updates: bytes) -> Doc:
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def squash(binding: YjsBinding, snapshot, operations) -> bytes:
    return binding.squash(snapshot, operations, doc_type="note", doc_id="doc-1")


@pytest.fixture
def binding() -> YjsBinding:
    return YjsBinding(roots=ROOTS)


@pytest.fixture
def edits() -> tuple[list[bytes], Doc, Doc]:
    """Two docs editing text, an array and a map concurrently, then syncing.

    Returns every update in the order it happened, and both (converged) docs.
    """
    a, b = Doc(client_id=1), Doc(client_id=2)
    updates_a, updates_b = recorder(a), recorder(b)
    a["content"], a["items"], a["meta"] = Text("hello world"), Array([1, 2]), Map({"x": "a"})
    b["content"], b["items"], b["meta"] = Text("HELLO"), Array(["b"]), Map({"x": "b", "y": 1})
    del a["content"][0:6]
    a["items"].append({"nested": [1, 2]})
    b["content"].insert(5, ", Bob")
    b["meta"]["y"] = 2
    updates = updates_a + updates_b
    a.apply_update(b.get_update())
    b.apply_update(a.get_update())
    for doc, updates_doc in ((a, updates_a), (b, updates_b)):
        seen = len(updates_doc)
        # Concurrent edits after the first sync.
        doc.get("content", type=Text).insert(0, f"[{doc.client_id}]")
        doc.get("items", type=Array).append(doc.client_id)
        updates += updates_doc[seen:]
    a.apply_update(b.get_update())
    b.apply_update(a.get_update())
    assert content(a) == content(b)
    return updates, a, b


def test_create_serialize_and_deserialize(binding):
    doc = binding.create("note", "doc-1")
    assert isinstance(doc, Doc)
    empty = binding.serialize(doc)
    assert isinstance(empty, bytes)
    assert content(binding.deserialize(empty)) == {"content": "", "items": [], "meta": {}}


def test_squash_of_concurrent_edits_matches_applying_them(binding, edits):
    updates, a, b = edits
    snapshot = squash(binding, None, updates)
    assert isinstance(snapshot, bytes)
    assert content(load(snapshot)) == content(a) == content(load(*updates))
    assert load(snapshot).get_state() == a.get_state()


def test_squash_in_several_rounds(binding, edits):
    updates, a, _ = edits
    snapshot = None
    for chunk in (updates[:3], updates[3:5], [], updates[5:]):
        snapshot = squash(binding, snapshot, chunk)
    assert content(load(snapshot)) == content(a)
    assert snapshot == squash(binding, None, updates)


def test_squash_agrees_with_the_generic_squash_and_merge_updates(binding, edits):
    updates, a, _ = edits
    generic = BaseBinding.squash(binding, None, updates, doc_type="note", doc_id="doc-1")
    merged = pycrdt.merge_updates(*updates)
    assert content(load(squash(binding, None, updates))) == content(load(generic))
    assert content(load(generic)) == content(load(merged)) == content(a)


def test_squash_of_nothing_is_an_empty_document(binding):
    assert content(load(squash(binding, None, []))) == content(Doc())


def test_reapplying_an_update_changes_nothing(binding, edits):
    updates, a, _ = edits
    once = squash(binding, None, updates)
    assert squash(binding, once, updates) == once
    assert squash(binding, None, updates + updates[::-1]) == once
    doc = binding.deserialize(once)
    binding.apply_operations(doc, updates[0])
    assert binding.serialize(doc) == once


def test_updates_that_wait_for_a_missing_update_are_kept(binding):
    a, b = Doc(client_id=1), Doc(client_id=2)
    updates_a = recorder(a)
    a["content"] = Text("one")
    b.apply_update(a.get_update())
    updates_b = recorder(b)
    text = b.get("content", type=Text)
    text += " two"
    del text[0:3]
    # The server sees B's edits before A's first update, which they build on.
    snapshot = squash(binding, None, updates_b)
    assert str(load(snapshot).get("content", type=Text)) == ""
    assert len(snapshot) > 2, "B's edits were dropped"
    snapshot = squash(binding, snapshot, [])  # still waiting, still kept
    snapshot = squash(binding, snapshot, updates_a)
    assert str(load(snapshot).get("content", type=Text)) == " two"
    assert snapshot == squash(binding, None, updates_a + updates_b)


def test_many_waiting_updates_are_merged_exactly(binding):
    doc = Doc(client_id=1)
    updates = recorder(doc)
    items = doc.get("items", type=Array)
    for i in range(300):
        items.append(i)
    snapshot = squash(binding, None, updates[1:])  # all wait for the first
    assert binding.merge(updates[1:]) == pycrdt.merge_updates(*updates[1:])
    snapshot = squash(binding, snapshot, updates[:1])
    assert load(snapshot).get("items", type=Array).to_py() == list(range(300))
    assert snapshot == doc.get_update()


def test_serialize_keeps_waiting_updates_on_the_generic_path_too(binding):
    a, b = Doc(client_id=1), Doc(client_id=2)
    updates_a = recorder(a)
    a["content"] = Text("one")
    b.apply_update(a.get_update())
    updates_b = recorder(b)
    b.get("content", type=Text).insert(3, " two")
    doc = binding.create("note", "doc-1")
    binding.apply_operations(doc, updates_b[0])
    waiting = binding.serialize(doc)
    assert binding.serialize(binding.deserialize(waiting)) == waiting
    generic = BaseBinding.squash(binding, waiting, updates_a, doc_type="note", doc_id="doc-1")
    assert str(load(generic).get("content", type=Text)) == "one two"
    assert generic == b.get_update()


def test_a_delete_of_content_not_seen_yet_is_kept(binding):
    a, b = Doc(client_id=1), Doc(client_id=2)
    updates_a = recorder(a)
    a["content"] = Text("one two")
    b.apply_update(a.get_update())
    updates_b = recorder(b)
    del b.get("content", type=Text)[0:4]
    snapshot = squash(binding, squash(binding, None, updates_b), updates_a)
    assert str(load(snapshot).get("content", type=Text)) == "two"


def test_waiting_updates_are_kept_with_real_edits_in_any_order(binding, edits):
    updates, a, _ = edits
    for seed in range(5):
        shuffled = random.Random(seed).sample(updates, len(updates))
        half = len(shuffled) // 2
        snapshot = squash(binding, squash(binding, None, shuffled[:half]), shuffled[half:])
        assert content(load(snapshot)) == content(a), seed


@pytest.mark.parametrize(
    "corrupt",
    [b"", b"not a yjs update", b"\xff" * 16, b"\x01\x01\x02"],
    ids=["empty", "text", "bad-varint", "truncated"],
)
def test_corrupt_bytes_raise_value_error(binding, edits, corrupt):
    updates, _, _ = edits
    with pytest.raises(ValueError, match="The snapshot is not a valid Yjs update"):
        binding.deserialize(corrupt)
    with pytest.raises(ValueError, match="The operations is not a valid Yjs update"):
        binding.apply_operations(binding.create("note", "doc-1"), corrupt)
    with pytest.raises(ValueError, match="Operations value 1 is not a valid Yjs update"):
        squash(binding, None, [updates[0], corrupt])
    with pytest.raises(ValueError, match="The snapshot is not a valid Yjs update"):
        squash(binding, corrupt, updates)


def test_damaged_updates_raise_value_error_or_apply(binding, edits):
    updates, a, _ = edits
    whole = a.get_update()
    rnd = random.Random(7)
    for _ in range(300):
        damaged = bytearray(whole)
        damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
        try:
            squash(binding, bytes(damaged), updates[:2])
        except ValueError:
            pass


def test_a_rust_panic_becomes_value_error():
    class PanicException(BaseException):
        pass

    class PanickingDoc:
        def apply_update(self, update):
            raise PanicException("called `Option::unwrap()` on a `None` value")

    with pytest.raises(ValueError, match="Option::unwrap"):
        apply_update(PanickingDoc(), b"\x00\x00", "The operations")


@pytest.mark.parametrize("value", ["text", {"a": 1}, [1, 2], None, 42])
def test_operations_that_are_not_bytes_raise_value_error(binding, value):
    name = type(value).__name__
    with pytest.raises(ValueError, match=f"must be a Yjs update \\(bytes\\), got {name}"):
        binding.apply_operations(binding.create("note", "doc-1"), value)
    with pytest.raises(ValueError, match=f"Operations value 0 must be .* got {name}"):
        squash(binding, None, [value])


def test_bytearray_and_memoryview_are_accepted(binding, edits):
    updates, a, _ = edits
    mixed = [bytearray(u) if i % 2 else memoryview(u) for i, u in enumerate(updates)]
    snapshot = squash(binding, memoryview(squash(binding, None, [])), mixed)
    assert content(load(snapshot)) == content(a)


def test_render_shows_configured_roots_and_size(binding, edits):
    _, a, _ = edits
    snapshot = a.get_update()
    text = binding.render(snapshot)
    header, body = text.split("\n", 1)
    assert header == f"Yjs document, {len(snapshot)} bytes"
    assert json.loads(body) == {
        "content": "[1][2]worldHELLO, Bob",
        "items": [1, 2, {"nested": [1, 2]}, "b", 1, 2],
        "meta": {"x": "b", "y": 2},
    }
    assert body.startswith('{\n  "content"')


def test_render_guesses_unconfigured_roots():
    doc = Doc()
    doc["text"] = Text("héllo 🌍")
    doc["list"] = Array(["a", "b", 3, b"\x00\x01"])
    doc["dict"] = Map({"n": 1.5, "inner": Text("in")})
    doc["xml"] = XmlFragment([XmlElement("p", {"class": "x"}, [XmlText("hi")])])
    doc["nothing"] = Array()
    body = YjsBinding().render(doc.get_update()).split("\n", 1)[1]
    assert json.loads(body) == {
        "text": "héllo 🌍",
        "list": ["a", "b", 3, "<2 bytes>"],
        "dict": {"n": 1.5, "inner": "in"},
        "xml": '<p class="x">hi</p>',
    }


def test_render_of_a_root_typed_differently_than_configured():
    doc = Doc()
    doc["content"] = Text("abc")
    rendered = YjsBinding(roots={"content": "array"}).render(doc.get_update())
    assert json.loads(rendered.split("\n", 1)[1]) == {"content": ["a", "b", "c"]}


def test_render_flags_waiting_updates_and_corrupt_snapshots(binding):
    a, b = Doc(client_id=1), Doc(client_id=2)
    a["content"] = Text("one")
    b.apply_update(a.get_update())
    waiting = recorder(b)
    b.get("content", type=Text).insert(3, " two")
    assert "wait for updates the server has not seen" in binding.render(waiting[0])
    assert binding.render(b"junk").startswith("<unreadable Yjs snapshot: The snapshot is")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"root": {}}, "Unknown YjsBinding option(s) 'root': the only option is 'roots'"),
        ({"roots": ["content"]}, "option 'roots' must be a dict .* got list"),
        ({"roots": {"content": "string"}}, "gives root 'content' the type 'string': use one"),
        ({"roots": {"": "text"}}, "has the key '': root names are non-empty strings"),
    ],
)
def test_bad_options_raise_improperly_configured(options, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("(s)", r"\(s\)")):
        YjsBinding(**options)


def test_binding_from_settings():
    spec = {"class": "docsync.bindings.yjs.YjsBinding", "options": {"roots": ROOTS}}
    with override_settings(DOCSYNC={"BINDINGS": {"canvas": spec}}):
        binding = get_binding_registry().get("canvas")
    assert isinstance(binding, YjsBinding)
    assert binding.roots == ROOTS


def test_missing_pycrdt_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycrdt", None)
    monkeypatch.delitem(sys.modules, "docsync.bindings.yjs")
    module = importlib.import_module("docsync.bindings.yjs")  # importing needs no pycrdt
    with pytest.raises(ImproperlyConfigured) as excinfo:
        module.YjsBinding()
    assert str(excinfo.value) == MISSING_PYCRDT
    assert "pip install pycrdt (or pip install docsync[yjs])" in MISSING_PYCRDT


# Interop with the JavaScript Yjs library ----------------------------------


def run_node(*args: str, stdin: str = "") -> dict:
    result = subprocess.run(
        ["node", str(NODE_CACHE / "interop.cjs"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def node_yjs() -> Path:
    """``interop.cjs`` with the yjs npm package in tests/.node_cache (kept between runs)."""
    return node_script("interop.cjs")


def test_interop_with_javascript_yjs(binding, node_yjs):
    produced = run_node("produce")
    assert produced["converged"]
    updates = [base64.b64decode(u) for u in produced["updates"]]
    expected = produced["expected"]
    rounds = squash(binding, squash(binding, None, updates[:5]), updates[5:])
    shuffled = squash(binding, None, random.Random(1).sample(updates, len(updates)))
    for snapshot in (rounds, shuffled):
        assert content(load(snapshot)) == expected
        loaded = run_node(
            "load", stdin=json.dumps({"snapshot": base64.b64encode(snapshot).decode()})
        )
        assert loaded == expected
