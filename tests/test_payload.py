"""What a client's values may hold (``docsync.payload``), checked at decode, and the
send path's defence for content stored before (``docsync.protocol``)."""

from __future__ import annotations

import json

import pytest

from docsync import payload
from docsync import protocol as p
from docsync.exceptions import InvalidValue, ProtocolError, ValidationError
from docsync.requests import MAX_CLOCK, parse_presence, parse_sync


def nested_text(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    "text,path,words",
    [
        ('{"a":"\\ud800"}', ("a",), "lone surrogate (\\ud800)"),
        ('{"a":["x","y\\udfffz"]}', ("a", 1), "lone surrogate (\\udfff)"),
        ('{"a":"\\u0000"}', ("a",), "NUL character"),
        ('{"a":{"k\\ud800":1}}', ("a",), 'has a key ("k\\ud800")'),
        ('{"n":' + "9" * 5000 + "}", ("n",), "5000 digits"),
        ('{"n":[-' + "9" * 4400 + "]}", ("n", 0), "4400 digits"),
        ('{"n":1e999}', ("n",), "too large"),
        ('{"n":NaN}', ("n",), "NaN"),
        ('{"n":[Infinity]}', ("n", 0), "Infinity"),
        # Too deep for the decoder itself: refused at decode, the field named.
        ('{"d":' + nested_text(50_000) + "}", ("d",) + (0,) * 127, "nested too deeply"),
        # ... also with a refused number before it (found by tests/test_fuzz.py).
        ('{"n":NaN,"d":' + nested_text(50_000) + "}", ("d",) + (0,) * 127, "nested too deeply"),
        ('{"n":' + "9" * 5000 + ',"d":' + nested_text(50_000) + "}", ("d",) + (0,) * 127, "deeply"),
    ],
)
def test_refused_values_name_their_field(text, path, words):
    with pytest.raises(InvalidValue) as info:
        payload.loads(text)
    assert info.value.path == path
    assert words in info.value.message
    assert isinstance(info.value, ValidationError)


def test_depth_limit_counts_the_outer_value_as_level_one():
    payload.check_depth(json.loads(nested_text(128)))
    with pytest.raises(InvalidValue):
        payload.check_depth(json.loads(nested_text(129)))
    payload.check_depth(json.loads(nested_text(10)), max_depth=10)
    with pytest.raises(InvalidValue) as info:
        payload.check_depth({"x": [[1, {"y": json.loads(nested_text(8))}]]}, max_depth=10)
    assert info.value.path == ("x", 0, 1, "y", 0, 0, 0, 0, 0, 0)
    with pytest.raises(InvalidValue) as info:
        payload.check_depth([[[]]], max_depth=4, path=("presence",), level=3)
    assert info.value.message.startswith("presence[0][0] is nested too deeply: at most 4")


def test_sync_operations_and_presence_are_bounded_in_depth_within_the_frame():
    base = {"type": "doc", "docId": "d", "clock": 0}
    # The frame ["sync", {"operations": [...]}] puts operations at level 3.
    parse_sync({**base, "operations": json.loads(nested_text(126))})
    with pytest.raises(InvalidValue, match=r"^operations\[0\]\[0\]"):
        parse_sync({**base, "operations": json.loads(nested_text(127))})
    with pytest.raises(InvalidValue, match="at most 5 levels"):
        parse_sync({**base, "operations": [[[[1]]]]}, max_depth=5)
    # A snapshot that is sent along but not stored is not walked here.
    parse_sync({**base, "operations": [], "serializedDoc": json.loads(nested_text(500))})
    parse_presence({"docId": "d", "presence": json.loads(nested_text(126))})
    with pytest.raises(InvalidValue, match=r"^presence\[0\]"):
        parse_presence({"docId": "d", "presence": json.loads(nested_text(127))})


@pytest.mark.parametrize(
    "value",
    [
        {"emoji": "😀", "text": "héllo wörld"},
        [1, -2, 3.5, 1e300, 10**4000, True, None, "", {}],
        {"brackets in strings": "[[[[{{{{" * 200},
        [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],
    ],
)
def test_well_formed_values_pass_unchanged(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert payload.loads(text) == value


def test_an_escaped_surrogate_pair_is_one_character():
    assert payload.loads('"\\ud83d\\ude00"') == "😀"


def test_not_json_is_a_value_error():
    with pytest.raises(ValueError):
        payload.loads('{"a":')


def test_check_walks_values_of_any_depth_without_recursion():
    value: list = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidValue) as info:
        payload.check(value, 128)
    assert len(info.value.path) == 128
    assert "…(122 levels more)" in info.value.message


def test_field_names_read_like_javascript():
    assert InvalidValue(("operations", 0, "x"), "is bad").message == "operations[0].x is bad."
    assert InvalidValue(("a", "b c"), "is bad").message == 'a["b c"] is bad.'
    assert InvalidValue((), "is bad").message == "The value is bad."


def test_decode_packet_names_fields_of_the_event_argument():
    with pytest.raises(InvalidValue) as info:
        p.decode_packet('21["sync",{"docId":"\\ud800"}]')
    assert info.value.message.startswith("docId contains a lone surrogate")
    with pytest.raises(ProtocolError, match="The event name contains a NUL"):
        p.decode_packet('21["\\u0000",{}]')
    with pytest.raises(InvalidValue, match="^deviceId contains a lone surrogate"):
        p.decode_packet('0{"deviceId":"\\udc00"}')
    too_deep = '2["sync",{"x":' + nested_text(50_000) + "}]"
    with pytest.raises(InvalidValue, match=r"^x\[0\].*nested too deeply: at most 5 levels"):
        p.decode_packet(too_deep, max_depth=5)


def test_a_stored_lone_surrogate_is_sent_as_an_escape():
    frames = p.encode_event("presence", {"docId": "d", "presence": {"c": "a\ud800b"}})
    frames[0].encode("utf-8")  # a WebSocket can carry it
    assert "\\ud800" in frames[0]
    assert json.loads(frames[0][2:]) == ["presence", {"docId": "d", "presence": {"c": "a\ud800b"}}]
    # Ordinary text stays as JavaScript writes it (UTF-8, not escaped).
    assert "héllo 😀" in p.encode_event("x", {"t": "héllo 😀"})[0]


def test_a_stored_value_too_deep_for_the_encoder_is_still_sent():
    value: list = ["leaf", {"k": [1.5, None, True]}]
    for _ in range(5000):
        value = [value, "x"]
    frames = p.encode_ack(3, {"data": {"operations": [value]}})
    inner = "[" * 5000 + '["leaf",{"k":[1.5,null,true]}]' + ',"x"]' * 5000
    assert frames == ['433[{"data":{"operations":[' + inner + "]}}]"]
    assert p.count_attachments([value, b"x"]) == 1 and not p.Packet.data_is_binary(value)


def test_iterative_encoder_matches_json():
    value = {"a": [1, {"b": "x\ud800é"}, [], {}], "c": None, "d": 1.5, "e": True, "f": 'q"\\'}
    assert p._encode_deep(value) == json.dumps(value, separators=(",", ":"))


def test_presence_size_is_bounded():
    value = {"c": "é" * 10}
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    assert parse_presence({"docId": "d", "presence": value}, size).presence == value
    too_large = r"presence is too large \(28 bytes as JSON, at most 27"
    with pytest.raises(ValidationError, match=too_large):
        parse_presence({"docId": "d", "presence": value}, size - 1)
    assert parse_presence({"docId": "d", "presence": None}, 1).presence is None


def test_presence_holds_no_binary_data():
    with pytest.raises(ValidationError, match="presence must be a JSON value, without binary"):
        parse_presence({"docId": "d", "presence": {"cursor": b"\x00"}})


def test_clock_is_bounded():
    base = {"type": "doc", "docId": "d", "operations": []}
    assert parse_sync({**base, "clock": MAX_CLOCK}).clock == MAX_CLOCK
    with pytest.raises(ValidationError, match="clock must be at most"):
        parse_sync({**base, "clock": MAX_CLOCK + 1})
    with pytest.raises(ValidationError, match="clock must be at most"):
        parse_sync({**base, "clock": 10**4000})
