"""DocNodeBinding: golden vectors from the JavaScript library, formatting, config.

The vector tests replay every case of ``single.json``, ``concurrent.json`` and
``edge.json`` (see ``tests/docnode_vectors.py`` for where they are looked
up) and compare the exact text ``JSON.stringify`` would write.
"""

from __future__ import annotations

import math
import random

import pytest
from django.core.exceptions import ImproperlyConfigured

from docsync.bindings.base import load_binding
from docsync.bindings.docnode import DocNodeBinding, DocNodeDoc
from docsync.bindings.docnode.errors import RollbackFailed
from docsync.bindings.docnode.jsformat import (
    JSONParseError,
    js_dumps,
    js_keys,
    js_number,
    js_parse,
    js_string,
)

from .docnode_vectors import case_id, case_params, load_cases, vectors_dir

ROOT_ID = "01jqz3f5d8a0000000000000r0"
NODES = {
    "root": {"label": {"kind": "string", "default": ""}},
    "text": {"value": {"kind": "string", "default": ""}},
    "item": {
        "title": {"kind": "string", "default": "untitled"},
        "count": {"kind": "number", "default": 0},
        "done": {"kind": "boolean", "default": False},
    },
}
BASE = [
    ROOT_ID,
    "root",
    {},
    [
        ["a", "text", {"value": '"A"'}, [["a1", "text", {}], ["a2", "text", {}]]],
        ["b", "item", {"title": '"B"', "count": "3"}],
        ["c", "text", {"value": '"C"'}],
    ],
]


@pytest.fixture
def binding() -> DocNodeBinding:
    return DocNodeBinding(doc_type="root", nodes=NODES)


def loaded(binding: DocNodeBinding) -> DocNodeDoc:
    return binding.deserialize(BASE)


# -- golden vectors ------------------------------------------------------------

_PARAMS = case_params()
_VECTOR_PARAMS = [pytest.param(p, id=case_id(p)) for p in _PARAMS] or [
    pytest.param(
        None,
        marks=pytest.mark.skip(
            reason=f"DocNode vectors: golden vectors not found in {vectors_dir()} "
            "(set DOCSYNC_DOCNODE_VECTORS to their folder)"
        ),
    )
]


@pytest.mark.parametrize("param", _VECTOR_PARAMS)
def test_golden_vector(param: tuple[str, int]) -> None:
    case = load_cases(param[0])[param[1]]
    binding = DocNodeBinding.from_description(case["config"])
    if case.get("errorAt") == "load":
        with pytest.raises(ValueError) as excinfo:
            binding.deserialize(case["base"])
        assert str(excinfo.value) == case["error"]
        return
    doc = binding.deserialize(case["base"])
    if case.get("errorAt") == "apply":
        _assert_rollback_never_ends(binding, doc, case["batches"])
        return
    for index, (batch, step) in enumerate(zip(case["batches"], case["steps"], strict=True)):
        aborts = doc.aborts
        if "applyError" in step:  # no vector has one: the library never threw
            with pytest.raises(ValueError):
                binding.apply_operations(doc, batch)
            return
        binding.apply_operations(doc, batch)
        assert doc.aborts - aborts == step["aborts"], f"rollbacks in batch {index}"
        _assert_serializes_as(binding, doc, step.get("doc"), step.get("error"))
    _assert_serializes_as(binding, doc, case.get("expected"), case.get("error"))


def _assert_serializes_as(binding: DocNodeBinding, doc: DocNodeDoc, expected, error) -> None:
    if error is not None:
        with pytest.raises(ValueError) as excinfo:
            binding.dumps(doc)
        assert str(excinfo.value) == error
    else:
        assert binding.dumps(doc) == js_dumps(expected)


def _assert_rollback_never_ends(binding: DocNodeBinding, doc: DocNodeDoc, batches) -> None:
    """The library never returns here; we refuse the batch and the document."""
    with pytest.raises(RollbackFailed, match="rollback cannot complete"):
        for batch in batches:
            binding.apply_operations(doc, batch)
    with pytest.raises(ValueError, match="can no longer be used"):
        binding.serialize(doc)
    with pytest.raises(ValueError, match="can no longer be used"):
        binding.apply_operations(doc, [[], {}])


def test_vectors_dir_can_be_moved(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DOCSYNC_DOCNODE_VECTORS", str(tmp_path))
    assert vectors_dir() == tmp_path


# -- JavaScript formatting -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (100.0, "100"),
        (-1.5, "-1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1 / 3, "0.3333333333333333"),
        (4.35, "4.35"),
        (2.0**53, "9007199254740992"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e21, "1e+21"),
        (1.25e21, "1.25e+21"),
        (0.000001, "0.000001"),
        (0.0000012345, "0.0000012345"),
        (1e-7, "1e-7"),
        (-1e-7, "-1e-7"),
        (1.5e-7, "1.5e-7"),
        (123e-20, "1.23e-18"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (math.inf, "null"),
        (-math.inf, "null"),
        (math.nan, "null"),
    ],
)
def test_js_number(value: float, text: str) -> None:
    assert js_number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("hi", '"hi"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f é 日本 \u2028 😀", '"\x7f é 日本 \u2028 😀"'),
        ("\ud800", '"\\ud800"'),
        ("x\udc00", '"x\\udc00"'),
        ("\ud83d\ude00", '"😀"'),  # a UTF-16 pair held as two code points
    ],
)
def test_js_string(value: str, text: str) -> None:
    assert js_string(value) == text


def test_js_parse_follows_json_parse() -> None:
    assert js_parse(" 7 ") == 7.0 and type(js_parse("7")) is float
    assert js_parse("1e400") == math.inf
    assert math.copysign(1, js_parse("-0")) == -1
    assert js_parse('"\\u00e9"') == "é"
    assert js_parse("true") is True
    for text in ("NaN", "Infinity", "-Infinity", "01", "[1,]", "not json", "", "'x'"):
        with pytest.raises(JSONParseError):
            js_parse(text)


def test_js_keys_puts_array_indexes_first() -> None:
    keys = {"b": 1, "2": 1, "a": 1, "10": 1, "01": 1, "4294967295": 1, "0": 1}
    assert js_keys(keys) == ["0", "2", "10", "b", "a", "01", "4294967295"]


def test_js_dumps_matches_json_stringify() -> None:
    value = ["id", "t", {"k": '"v\\n"', "1": "0"}, [[None, True, 1e21, -0.0, "\ud800"]]]
    assert (
        js_dumps(value) == '["id","t",{"1":"0","k":"\\"v\\\\n\\""},[[null,true,1e+21,0,"\\ud800"]]]'
    )


# -- state normalisation -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "written"),
    [
        ("count", "5.0", "5"),
        ("count", " 1e2 ", "100"),
        ("count", "-0", None),  # the default: left out
        ("count", "1e400", "null"),
        ("count", '"5"', None),
        ("title", '"\\u00e9t\\u00e9"', '"été"'),
        ("title", "5", None),
        ("done", "1.0", "1"),
        ("done", "true", None),
        ("done", "2", None),
    ],
)
def test_patch_values_are_normalised(binding, key: str, text: str, written) -> None:
    doc = binding.deserialize([ROOT_ID, "root", {}, [["n", "item", {}]]])
    binding.apply_operations(doc, [[], {"n": {key: text}}])
    state = binding.serialize(doc)[3][0][2]
    assert state == ({} if written is None else {key: written})


def test_fast_paths_agree_with_the_parser() -> None:
    # written_from_text short-cuts canonical text; it must never disagree
    # with JSON.parse followed by the kind's parsing.
    rng = random.Random(7)
    alphabet = ['"', "\\", "a", "é", "0", "1", "-", ".", "e", " ", "\x01", "\ud800", "😀", "u"]
    samples = ["0", "-0", "1", "01", "-", "123456789012345", "1234567890123456", '""', '"\\u0041"']
    samples += ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(3000)]
    samples += ['"' + text + '"' for text in samples]
    for kind in ("string", "number", "boolean"):
        schema = DocNodeBinding(doc_type="d", nodes={"p": {"k": {"kind": kind}}}).schema
        state_def = schema.nodes["p"]["k"]
        for text in samples:
            try:
                slow = state_def.written_from_json(js_parse(text))
            except JSONParseError:
                with pytest.raises(JSONParseError):
                    state_def.written_from_text(text)
                continue
            assert state_def.written_from_text(text) == slow, (kind, text)


def test_load_normalises_and_keeps_key_order(binding) -> None:
    snapshot = [ROOT_ID, "root", {"label": '""'}, [["n", "item", {"done": "1", "count": "1.50"}]]]
    doc = binding.deserialize(snapshot)
    assert (
        binding.dumps(doc)
        == f'["{ROOT_ID}","root",{{}},[["n","item",{{"done":"1","count":"1.5"}}]]]'
    )


# -- the binding contract ------------------------------------------------------


def test_create_and_squash_from_nothing(binding) -> None:
    ops = [[[0, [["n1", "text"]], 0, 0, 0]], {"n1": {"value": '"hi"'}}]
    snapshot = binding.squash(None, [ops], doc_type="root", doc_id=ROOT_ID)
    assert snapshot == [ROOT_ID, "root", {}, [["n1", "text", {"value": '"hi"'}]]]
    assert binding.serialize(binding.create("root", ROOT_ID)) == [ROOT_ID, "root", {}]


def test_create_refuses_other_types_and_non_ulid_ids(binding) -> None:
    with pytest.raises(ValueError, match="type 'root', not 'note'"):
        binding.create("note", ROOT_ID)
    with pytest.raises(
        ValueError, match="Invalid document id: DOC-1. It must be a lowercase ULID."
    ):
        binding.create("root", "DOC-1")
    with pytest.raises(ValueError, match="lowercase ULID"):
        binding.deserialize(["01JQZ3F5D8A0000000000000R0", "root", {}])
    lenient = DocNodeBinding(doc_type="root", nodes=NODES, check_doc_ids=False)
    assert lenient.serialize(lenient.create("root", "doc-1")) == ["doc-1", "root", {}]


def test_deserialize_accepts_json_text_and_bytes(binding) -> None:
    text = js_dumps(BASE)
    assert binding.serialize(binding.deserialize(text)) == binding.serialize(loaded(binding))
    assert binding.serialize(binding.deserialize(text.encode())) == binding.serialize(
        loaded(binding)
    )


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        ("{not json", "not JSON"),
        ({"id": ROOT_ID}, "must be \\[id, type, state\\]"),
        ([ROOT_ID, "other", {}], "Attempted to create a node of type 'other'"),
        ([ROOT_ID, "text", {}], "serves documents of type 'root'"),
        ([ROOT_ID, "root", {}, [["a", "text", {}], ["a", "text", {}]]], "already exists"),
        ([ROOT_ID, "root", {}, [["a", "root", {}]]], "only the root"),
        ([ROOT_ID, "root", {}, [["a", "text", {"value": "x"}]]], "not valid JSON"),
        ([ROOT_ID, "root", {}, [["a", "text", {"value": 3}]]], "string of JSON text"),
        ([ROOT_ID, "root", {}, {"a": 1}], "must be an array"),
    ],
)
def test_corrupt_snapshots_raise_value_error(binding, snapshot, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binding.deserialize(snapshot)


@pytest.mark.parametrize(
    "operations",
    [
        None,
        [[]],
        [{}, {}],
        [[], []],
        [[[3, "a", 0]], {}],
        [[[1, "a"]], {}],
        [[[True, "a", 0]], {}],
        [[[0, [["n1"]], 0, 0, 0]], {}],
        [[[2, "a", 0, 0, 5, 0]], {}],
        [[[1, 7, 0]], {}],
        [[], {"a": {"value": 5}}],
        [[[1, "c", 0], [9]], {}],  # a valid delete first: it must not run
    ],
)
def test_malformed_operations_are_refused_untouched(binding, operations) -> None:
    doc = loaded(binding)
    before = binding.dumps(doc)
    with pytest.raises(ValueError):
        binding.apply_operations(doc, operations)
    assert binding.dumps(doc) == before


def test_rejected_operations_roll_back_instead_of_raising(binding) -> None:
    doc = loaded(binding)
    before = binding.dumps(doc)
    binding.apply_operations(doc, [[[1, "c", 0], [2, "b", 0, 0, "zz", 0]], {}])
    assert doc.aborts == 1
    assert binding.dumps(doc) == before


def test_move_already_in_place_is_checked_before_the_range(binding) -> None:
    # As in the library: "after b" where b.next is c is a no-op even though
    # c..a is not a range, so nothing fails and nothing rolls back.
    doc = loaded(binding)
    binding.apply_operations(doc, [[[2, "c", "a", 0, "b", 0]], {}])
    assert doc.aborts == 0


def test_unknown_state_key_makes_serialize_fail(binding) -> None:
    doc = loaded(binding)
    binding.apply_operations(doc, [[], {"a": {"foo": '"x"'}}])
    message = "The JSON serialization for state foo on a node of type text is undefined."
    with pytest.raises(ValueError, match=message):
        binding.serialize(doc)


def test_unknown_state_key_sticks_like_in_the_library(binding) -> None:
    doc = loaded(binding)
    binding.apply_operations(doc, [[], {"a": {"foo": '"x"'}}])
    # Setting it again must first save its old value, which cannot be written:
    # the batch is rolled back, the earlier state change included.
    binding.apply_operations(doc, [[], {"c": {"value": '"C2"'}, "a": {"foo": '"y"'}}])
    assert doc.aborts == 1
    assert doc.nodes["c"].state["value"] == '"C"'
    # Deleting the node must save its state too: the delete fails.
    binding.apply_operations(doc, [[[1, "a", 0]], {}])
    assert doc.aborts == 2 and "a" in doc.nodes


def test_failing_rollback_breaks_the_document(binding) -> None:
    doc = loaded(binding)
    # Move c to the front, delete b (c's old prev), then fail: the rollback's
    # first entry, "move c back after b", fails in turn.
    batch = [[[2, "c", 0, 0, 0, "a"], [1, "b", 0], [2, "a", 0, 0, "zz", 0]], {}]
    with pytest.raises(RollbackFailed, match="never returns"):
        binding.apply_operations(doc, batch)
    with pytest.raises(ValueError, match="can no longer be used"):
        binding.dumps(doc)


def test_documents_of_another_binding_are_refused(binding) -> None:
    other = DocNodeBinding(doc_type="root", nodes=NODES)
    with pytest.raises(TypeError):
        binding.serialize(other.create("root", ROOT_ID))
    with pytest.raises(TypeError):
        binding.apply_operations({"not": "a doc"}, [[], {}])


def test_deep_trees_do_not_hit_the_recursion_limit(binding) -> None:
    snapshot: list = ["n0", "text", {}]
    for depth in range(1, 5000):
        snapshot = [f"n{depth}", "text", {}, [snapshot]]
    doc = binding.deserialize([ROOT_ID, "root", {}, [snapshot]])
    assert len(binding.dumps(doc)) > 5000 * 10
    assert binding.render(binding.serialize(doc)).count("\n") == 5000


def test_render_shows_an_indented_tree(binding) -> None:
    assert binding.render(BASE) == "\n".join(
        [
            f"root  {ROOT_ID}",
            '  text  a  value="A"',
            "    text  a1",
            "    text  a2",
            '  item  b  title="B"  count=3',
            '  text  c  value="C"',
        ]
    )
    assert binding.render(b"\x00\x01") == "<2 bytes>"


# -- configuration -------------------------------------------------------------


def test_settings_dict_builds_the_binding() -> None:
    spec = {
        "class": "docsync.bindings.docnode.DocNodeBinding",
        "options": {"doc_type": "note", "nodes": {"p": {"text": {"kind": "string"}}}},
    }
    binding = load_binding(spec, "BINDINGS['note']")
    assert isinstance(binding, DocNodeBinding)
    assert binding.schema.nodes["p"]["text"].default_string == '""'
    assert binding.schema.nodes["note"] == {}  # the doc type is always registered


def test_natural_defaults() -> None:
    nodes = {"x": {"s": {"kind": "string"}, "n": {"kind": "number"}, "b": {"kind": "boolean"}}}
    defs = DocNodeBinding(doc_type="d", nodes=nodes).schema.nodes["x"]
    assert [d.default_string for d in defs.values()] == ['""', "0", "0"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs the options 'doc_type'"),
        ({"doc_type": "d"}, "needs the options"),
        ({"doc_type": "", "nodes": {}}, "'doc_type' must be a non-empty string"),
        ({"doc_type": "d", "nodes": []}, "'nodes' must be a dict"),
        ({"doc_type": "d", "nodes": {}, "colour": 1}, "unknown options \\['colour'\\]"),
        ({"doc_type": "d", "nodes": {}, "check_doc_ids": "yes"}, "'check_doc_ids'"),
        ({"doc_type": "d", "nodes": {"": {}}}, "non-empty strings"),
        ({"doc_type": "d", "nodes": {"p": None}}, "nodes\\['p'\\] must be a dict"),
        ({"doc_type": "d", "nodes": {"p": {"t": "string"}}}, "'kind' one of"),
        ({"doc_type": "d", "nodes": {"p": {"t": {"kind": "date"}}}}, "'kind' one of"),
        ({"doc_type": "d", "nodes": {"p": {"t": {"kind": "string", "x": 1}}}}, "unknown keys"),
        ({"doc_type": "d", "nodes": {"p": {"t": {"kind": "string", "default": 1}}}}, "fit"),
        ({"doc_type": "d", "nodes": {"p": {"t": {"kind": "number", "default": True}}}}, "fit"),
        (
            {"doc_type": "d", "nodes": {"p": {"t": {"kind": "number", "default": math.inf}}}},
            "fit",
        ),
        ({"doc_type": "d", "nodes": {"p": {"t": {"kind": "boolean", "default": 0}}}}, "fit"),
    ],
)
def test_bad_configuration_is_improperly_configured(options, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        DocNodeBinding(**options)


def test_from_description_checks_default_strings() -> None:
    config = {
        "type": "root",
        "nodes": [
            {
                "type": "p",
                "state": {"n": {"kind": "number", "default": 1e21, "defaultString": "1e+21"}},
            }
        ],
    }
    assert DocNodeBinding.from_description(config).schema.nodes["p"]["n"].default_string == "1e+21"
    config["nodes"][0]["state"]["n"]["defaultString"] = "1000000000000000000000"
    with pytest.raises(ImproperlyConfigured, match="defaultString"):
        DocNodeBinding.from_description(config)
