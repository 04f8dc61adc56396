"""What a client's values may hold; checked as a frame is decoded.

Pure Python, no Django (``docsync.protocol`` decodes every frame with
:func:`loads`). A value that passes can be stored by every provider, relayed
to every client and read back, so no client can poison a document or a
presence for the others. Refused, with ``InvalidValue`` (a
``ValidationError``) naming the field:

* numbers Python cannot read (more digits than ``int`` converts) and ones
  JSON cannot write back (``NaN``, ``Infinity``, ``1e999``), at decode;
* lone surrogates (``"\\ud800"``: not Unicode, no UTF-8 encoder or database
  takes them) and NUL (``"\\u0000"``: PostgreSQL refuses it in text), in
  any string or object key, at decode;
* arrays and objects nested deeper than ``max_depth`` (the frame's outer
  array is level 1): deep values break recursive encoders and decoders on the
  way out (Python's ``json``, msgpack in channels-redis, other clients). A
  frame too deep to decode at all is refused at decode; within it,
  :func:`check_depth` bounds what the server keeps or relays (operations,
  presence, a stored snapshot), so that the snapshot the official client
  sends with every sync, and the server mostly ignores, is never walked.

Cheap on well-formed frames: the C decoder reads the frame, and the Python
walk over its strings only runs when the text holds an escape that may
decode to a surrogate or NUL.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .exceptions import InvalidValue

#: Where a value is, as keys and indexes from the top of what was decoded.
Path = tuple[Any, ...]

#: Default of ``DOCSYNC["MAX_JSON_DEPTH"]``.
DEFAULT_MAX_DEPTH = 128

# An escape that may decode to a surrogate or NUL (a valid pair matches too:
# the walk then finds nothing).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89abcdefABCDEF]|0000)")
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


class _BadNumber(Exception):
    """Raised by the decoding hooks: the frame holds a number to refuse."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber
    return value


def _constant(name: str) -> Any:
    raise _BadNumber


_decode = json.JSONDecoder(parse_float=_finite, parse_constant=_constant).decode


class _Refused:
    """Stands in for a refused number while the field holding it is looked for."""

    def __init__(self, why: str) -> None:
        self.why = why


def _refuse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _Refused(f"is a number of {len(text.lstrip('-'))} digits, too long to read")


def _refuse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"is a number too large ({text[:20]})")


def _refuse_constant(name: str) -> Any:
    return _Refused(f"is {name}, which is not a JSON number")


_decode_marked = json.JSONDecoder(
    parse_int=_refuse_int, parse_float=_refuse_float, parse_constant=_refuse_constant
).decode


def loads(text: str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a client's JSON text, refusing what :mod:`docsync.payload` lists.

    Raises ``InvalidValue`` (a ``ValidationError``; ``.path`` says where) for a refused
    value and ``ValueError`` for text that is not JSON.
    """
    try:
        value = _decode(text)
    except _BadNumber:
        value = _decode_deep(text, max_depth)
    except RecursionError:
        raise _invalid(_deep_path(text, max_depth), _too_deep(max_depth)) from None
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
        value = _decode_deep(text, max_depth)
    else:
        if not _suspect(text):
            return value
    check(value)
    return value


def _decode_deep(text: str, max_depth: int) -> Any:
    """The second, marking decode: a refused number may sit in text too deep too."""
    try:
        return _decode_marked(text)
    except RecursionError:
        raise _invalid(_deep_path(text, max_depth), _too_deep(max_depth)) from None


def _too_deep(max_depth: int) -> str:
    return (
        f"is nested too deeply: at most {max_depth} levels of arrays and objects (MAX_JSON_DEPTH)"
    )


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _deep_path(text: str, max_depth: int) -> Path:
    """Where ``text`` first nests deeper than ``max_depth`` (for text too deep to decode).

    Scans the tokens that matter (strings, brackets, commas) without recursion.
    """
    stack: list[list[Any]] = []  # per open container: [is_object, index or key, expects key]
    for token in _TOKEN.finditer(text):
        char = token.group()[0]
        if char in "[{":
            if len(stack) == max_depth:
                break
            stack.append([char == "{", 0 if char == "[" else None, char == "{"])
        elif char in "]}":
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif char == ",":
            top = stack[-1]
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
        elif stack[-1][0] and stack[-1][2]:
            stack[-1][1], stack[-1][2] = json.loads(token.group()), False
    return tuple(frame[1] for frame in stack)


def _suspect(text: str) -> bool:
    # WebSocket text is valid UTF-8, so a surrogate or NUL can only come from
    # a JSON escape (a raw NUL is no JSON at all).
    return "\\u" in text and _SUSPECT_ESCAPE.search(text) is not None


def check(value: Any, max_depth: int | None = None) -> None:
    """Raise ``InvalidValue`` if ``value`` holds a refused string or number, or
    (with ``max_depth``) nests deeper. Iterative: a value of any depth is walked.
    """
    stack: list[tuple[Any, int, Path]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, (list, dict)):
            if max_depth is not None and depth > max_depth:
                raise _invalid(path, _too_deep(max_depth))
            if isinstance(item, list):
                stack.extend((child, depth + 1, (*path, i)) for i, child in enumerate(item))
            else:
                for key, child in item.items():
                    _check_string(key, path, key)
                    stack.append((child, depth + 1, (*path, key)))
        elif isinstance(item, _Refused):
            raise _invalid(path, item.why)


def check_depth(
    value: Any, max_depth: int = DEFAULT_MAX_DEPTH, path: Path = (), level: int = 1
) -> None:
    """Raise ``InvalidValue`` (naming the field) if ``value``, found at ``path``
    and nesting ``level`` of its frame, nests deeper than ``max_depth``.

    Visits containers only, level by level: cheap for operations and presence.
    """
    containers = (list, dict)
    if type(value) not in containers:
        return
    rows, depth = [value], level
    while rows:
        if depth > max_depth:
            try:
                check(value, max_depth - level + 1)
            except InvalidValue as exc:
                raise _invalid((*path, *exc.path), _too_deep(max_depth)) from None
        rows = [
            child
            for row in rows
            for child in (row if type(row) is list else row.values())
            if type(child) in containers
        ]
        depth += 1


def _check_string(text: Any, path: Path, key: Any = None) -> None:
    """Refuse a lone surrogate or NUL in ``text`` (the value at ``path``, or its key)."""
    if not isinstance(text, str) or (text.isascii() and "\x00" not in text):
        return
    bad = _BAD_CHAR.search(text)
    if bad is None:
        return
    char = bad.group()
    noun = "NUL character" if char == "\x00" else "lone surrogate"
    subject = "contains" if key is None else f"has a key ({json.dumps(key)}) that contains"
    raise _invalid(
        path,
        f"{subject} a {noun} (\\u{ord(char):04x}): strings must be valid Unicode without NUL",
    )


def _invalid(path: Path, problem: str) -> InvalidValue:
    return InvalidValue(path, problem)
