"""A Yjs squash never changes a document (issue 9 point 10): text split inside
a surrogate pair is squashed without a pycrdt Doc, and loads in Yjs to exactly
the merged state."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.node import node_script

pycrdt = pytest.importorskip("pycrdt")

from docsync.bindings.yjs import YjsBinding  # noqa: E402
from docsync.bindings.yjs_update import read_update, splits_surrogate_pair  # noqa: E402

# The issue's case, made by Yjs (tests/yjs_node/interop.cjs surrogate): A types
# "a😀b", B deletes UTF-16 unit 2 (the emoji's low half), A inserts "c" at 3.
SURROGATE_UPDATES = [
    base64.b64decode(u)
    for u in ("AQEBAAQBB2NvbnRlbnQGYfCfmIBiAA==", "AAEBAQIB", "AQEBBIQBAwFjAA==")
]


def test_the_issue_case_is_detected_and_squashed_exactly():
    binding = YjsBinding(roots={"content": "text"})
    assert splits_surrogate_pair(SURROGATE_UPDATES)
    assert not any(splits_surrogate_pair([u]) for u in SURROGATE_UPDATES)
    # Through a pycrdt Doc the text loses "b" (yrs splits the pair elsewhere):
    # that is the bug the binding avoids.
    doc = pycrdt.Doc()
    for update in SURROGATE_UPDATES:
        doc.apply_update(update)
    assert "b" not in str(doc.get("content", type=pycrdt.Text))
    snapshot = binding.squash(None, SURROGATE_UPDATES, doc_type="canvas", doc_id="d")
    assert snapshot == pycrdt.merge_updates(*SURROGATE_UPDATES)
    # In rounds, as the server squashes: the same content every time.
    rounds = None
    for update in SURROGATE_UPDATES:
        rounds = binding.squash(rounds, [update], doc_type="canvas", doc_id="d")
    assert decode_text(rounds) == decode_text(snapshot) == ["a😀b", "c"]


def decode_text(update: bytes) -> list[str]:
    return [s[3] for s in read_update(update)[0] if s[3] is not None]


def test_text_without_a_split_pair_keeps_the_fast_compact_squash():
    binding = YjsBinding()
    doc = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("content", type=pycrdt.Text)
    text.insert(0, "emoji 😀 and 🌍 everywhere")
    del text[0:6]
    text.insert(0, "🎉")
    assert not splits_surrogate_pair(updates)
    assert binding.squash(None, updates, doc_type="c", doc_id="d") == doc.get_update()


def test_unreadable_updates_take_the_exact_path_and_still_raise():
    binding = YjsBinding()
    assert splits_surrogate_pair([b"\xf0\x9f\x98"])  # cut short: cannot tell, so exact
    with pytest.raises(ValueError, match="Operations value 0 is not a valid Yjs update"):
        binding.squash(None, [b"\xf0\x9f\x98"], doc_type="c", doc_id="d")


@pytest.fixture(scope="module")
def interop():
    script = node_script("interop.cjs")

    def run(command: str, stdin: str = "") -> object:
        result = subprocess.run(
            ["node", str(script), command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        )
        return json.loads(result.stdout)

    return run


def test_the_squash_loads_in_yjs_to_exactly_the_merged_state(interop):
    made = interop("surrogate")
    assert made["converged"] and made["expected"]["content"] == "a\ufffdbc"
    updates = [base64.b64decode(u) for u in made["updates"]]
    assert updates == SURROGATE_UPDATES
    binding = YjsBinding(roots={"content": "text"})
    full = base64.b64decode(made["state"])
    for case in (updates, [*updates, full], [full, *updates], updates[::-1]):
        snapshot = binding.squash(None, case, doc_type="canvas", doc_id="d")
        loaded = interop("load", json.dumps({"snapshot": base64.b64encode(snapshot).decode()}))
        assert loaded == made["expected"], case
    rounds = None
    for update in updates:
        rounds = binding.squash(rounds, [update], doc_type="canvas", doc_id="d")
    loaded = interop("load", json.dumps({"snapshot": base64.b64encode(rounds).decode()}))
    assert loaded == made["expected"]


def test_the_update_reader_agrees_with_yjs_on_every_content_type(interop):
    for case in interop("structs"):
        structs, edges = read_update(base64.b64decode(case["update"]))
        assert [list(s) for s in structs] == case["structs"]
        for client, ranges in case["deleted"]:
            for clock, length in ranges:
                assert {(client, clock), (client, clock + length)} <= edges
