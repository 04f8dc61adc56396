"""JavaScript's JSON, in Python: ``JSON.parse`` and ``JSON.stringify`` as V8 does them.

DocNode stores every state value as the JSON text JavaScript writes, so a
byte-exact squash needs JavaScript's number and string formatting, its
stricter parser, and its object key order. Pure functions, no Django.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "JSONParseError",
    "js_dumps",
    "js_dumps_strings",
    "js_keys",
    "js_number",
    "js_parse",
    "js_string",
]

# JSON.stringify escapes only these: quote, backslash, C0 controls, and (since
# ES2019) unpaired surrogates. Everything else, U+2028 and emoji included,
# is written as is.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_ARRAY_INDEX_MAX = 2**32 - 2
_DIGITS = frozenset("0123456789")


class JSONParseError(ValueError):
    """The text is not JSON by ``JSON.parse``'s rules."""


def _reject_constant(name: str) -> Any:
    # Python accepts NaN and Infinity; JSON.parse does not.
    raise JSONParseError(f"Unexpected token in JSON: {name}")


# Every JSON number becomes a float: JavaScript has doubles only, and
# float() rounds decimal text exactly as JSON.parse does (1e400 -> inf).
_DECODER = json.JSONDecoder(parse_int=float, parse_float=float, parse_constant=_reject_constant)


def js_parse(text: str) -> Any:
    """Parse ``text`` like ``JSON.parse``: numbers are floats, no NaN/Infinity.

    Raises ``JSONParseError`` when the text is not JSON. A value nested too
    deeply for Python's parser raises ``RecursionError``.
    """
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JSONParseError(str(exc)) from None


def js_number(value: float) -> str:
    """Return ``JSON.stringify(value)`` for a double: Number::toString, or null."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"  # -0 too
    digits, point = _shortest_digits(abs(value))
    text = _place_point(digits, point)
    return "-" + text if value < 0 else text


def _shortest_digits(value: float) -> tuple[str, int]:
    """Split ``value`` into its shortest round-trip digits and decimal exponent.

    Python's repr and V8 both pick the shortest digit string that reads back
    as the same double (the closest one on ties), so only the layout differs.
    Returns ``(digits, n)`` with ``value == 0.digits * 10**n``.
    """
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def _place_point(digits: str, n: int) -> str:
    """Lay out ``0.digits * 10**n`` the way ECMAScript Number::toString does."""
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"


def js_string(value: str) -> str:
    """Return ``JSON.stringify(value)`` for a string (ES2019 well-formed)."""
    if not _NEEDS_ESCAPE.search(value):
        return '"' + value + '"'
    return '"' + "".join(_escape_chars(value)) + '"'


def _escape_chars(value: str) -> Iterator[str]:
    """Yield ``value``'s characters, escaped where JSON.stringify escapes them."""
    index, size = 0, len(value)
    while index < size:
        char = value[index]
        code = ord(char)
        if char in _SHORT_ESCAPES:
            yield _SHORT_ESCAPES[char]
        elif code < 0x20:
            yield f"\\u{code:04x}"
        elif 0xD800 <= code <= 0xDBFF and _is_low(value, index + 1):
            # A Python string may hold a pair as two code points; in UTF-16
            # that is one well-formed character, written as such.
            yield chr(0x10000 + ((code - 0xD800) << 10) + ord(value[index + 1]) - 0xDC00)
            index += 1
        elif 0xD800 <= code <= 0xDFFF:
            yield f"\\u{code:04x}"
        else:
            yield char
        index += 1


def _is_low(value: str, index: int) -> bool:
    return index < len(value) and 0xDC00 <= ord(value[index]) <= 0xDFFF


def _is_array_index(key: str) -> bool:
    if not key.isascii() or not key.isdigit():
        return False
    return (key == "0" or key[0] != "0") and int(key) <= _ARRAY_INDEX_MAX


def js_keys(obj: Iterable[str]) -> list[str]:
    """Return an object's keys in JavaScript's order.

    JavaScript objects list integer-like keys first, ascending, then the
    other keys in insertion order; a Python dict keeps insertion order only.
    """
    keys = list(obj)
    # Fast path, taken for nearly every object: no key starts with a digit.
    if not any(key[:1] in _DIGITS for key in keys):
        return keys
    indexes = sorted((key for key in keys if _is_array_index(key)), key=int)
    if not indexes:
        return keys
    return indexes + [key for key in keys if not _is_array_index(key)]


def js_dumps_strings(value: Any) -> str:
    """``js_dumps`` for values whose scalars are all strings, such as a serialized doc.

    Python's C encoder writes such values exactly as JSON.stringify does,
    except for lone surrogates, which are escaped afterwards. Falls back to
    ``js_dumps`` when the value is nested too deeply for the C encoder.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    except RecursionError:
        return js_dumps(value)
    if _SURROGATE.search(text):
        text = _SURROGATE_RUN.sub(lambda match: "".join(_escape_chars(match.group())), text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_RUN = re.compile("[\ud800-\udfff]+")


def js_dumps(value: Any) -> str:
    """Return ``JSON.stringify(value)`` for a JSON value (no indentation).

    Iterative, so deep node trees do not hit Python's recursion limit.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, (list, tuple)):
            stack.extend(_array_parts(item))
        elif isinstance(item, dict):
            stack.extend(_object_parts(item))
        else:
            out.append(_scalar(item))
    return "".join(out)


class _Raw:
    """Literal text queued in ``js_dumps``'s stack (a bracket or a comma)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_OPEN_ARRAY, _CLOSE_ARRAY = _Raw("["), _Raw("]")
_OPEN_OBJECT, _CLOSE_OBJECT = _Raw("{"), _Raw("}")
_COMMA = _Raw(",")


def _array_parts(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    """Stack entries for an array, reversed since the stack pops from the end."""
    parts: list[Any] = [_OPEN_ARRAY]
    for index, item in enumerate(items):
        if index:
            parts.append(_COMMA)
        parts.append(item)
    parts.append(_CLOSE_ARRAY)
    parts.reverse()
    return parts


def _object_parts(obj: dict[str, Any]) -> list[Any]:
    """Stack entries for an object, in JavaScript key order, reversed."""
    parts: list[Any] = [_OPEN_OBJECT]
    for index, key in enumerate(js_keys(obj)):
        if index:
            parts.append(_COMMA)
        parts.append(_Raw(js_string(key) + ":"))
        parts.append(obj[key])
    parts.append(_CLOSE_OBJECT)
    parts.reverse()
    return parts


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return js_string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number(float(value))
    raise TypeError(f"{value!r} is not a JSON value.")
