"""Reading Yjs updates (format v1) in Python, for what pycrdt cannot tell.

Yjs counts text in UTF-16 units and lets a client split a string between
the two halves of a surrogate pair (``"😀"`` is two units): it then writes
U+FFFD for each half. yrs (pycrdt) splits at a character boundary instead,
so a document loaded into a pycrdt ``Doc`` can differ from the one every
Yjs client holds (the issue's ``a😀b`` case: the Doc drops ``b``).
:func:`splits_surrogate_pair` finds updates where that can happen, so that
the binding squashes them without a ``Doc``. The format is Yjs's
``UpdateEncoderV1`` (``writeStructs`` then ``writeDeleteSet``).
"""

from __future__ import annotations

import re
from typing import Any

# A byte that starts a 4-byte UTF-8 sequence: without one, no string of
# the update holds a character outside the BMP (a surrogate pair in UTF-16).
_FOUR_BYTE_LEAD = re.compile(rb"[\xf0-\xf4]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

GC, DELETED, JSON, BINARY, STRING, EMBED, FORMAT, TYPE, ANY, DOC = range(10)
SKIP = 10
_XML_ELEMENT, _XML_HOOK = 3, 5


class _Reader:
    """lib0's decoder: variable-length integers, strings and ``any`` values."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def skip_int(self) -> None:
        while self.byte() >= 0x80:
            pass

    def buffer(self) -> bytes:
        size = self.uint()
        start, self.pos = self.pos, self.pos + size
        if self.pos > len(self.data):
            raise IndexError("truncated")
        return self.data[start : self.pos]

    def string(self) -> str:
        return self.buffer().decode("utf-8", "replace")

    def count(self) -> int:
        """A count of items that follow (each at least one byte)."""
        count = self.uint()
        if count > len(self.data) - self.pos:
            raise ValueError("count beyond the end of the update")
        return count

    def skip_any(self) -> None:
        """Skip one lib0 ``any`` value (without recursion: it may nest deeply)."""
        todo = [False]  # one entry per value to skip: True when a key comes first
        while todo:
            if todo.pop():
                self.buffer()
            kind = self.byte()
            if kind == 125:
                self.skip_int()
            elif kind == 124:
                self.pos += 4
            elif kind in (123, 122):
                self.pos += 8
            elif kind in (119, 116):
                self.buffer()
            elif kind == 118:
                todo += [True] * self.count()
            elif kind == 117:
                todo += [False] * self.count()
            elif kind < 116:
                raise ValueError(f"unknown lib0 any type {kind}")


def _utf16_length(text: str) -> int:
    return len(text) + len(_ASTRAL.findall(text))


def read_update(data: bytes) -> tuple[list[tuple[int, int, int, Any]], set[tuple[int, int]]]:
    """Return an update's structs ``(client, clock, length, str or None)`` and the
    clocks its references and deletions point at, as ``(client, clock)``: where
    Yjs may split an item (a struct's edges, after an origin, before a right
    origin, a deleted range's edges).

    Raises ``ValueError`` (or ``IndexError``) for bytes that are not an update.
    """
    reader = _Reader(data)
    structs: list[tuple[int, int, int, Any]] = []
    edges: set[tuple[int, int]] = set()
    for _ in range(reader.uint()):
        count, client, clock = reader.uint(), reader.uint(), reader.uint()
        for _ in range(count):
            length, text = _read_struct(reader, edges)
            structs.append((client, clock, length, text))
            edges.add((client, clock))
            clock += length
            edges.add((client, clock))
    for _ in range(reader.uint()):
        client = reader.uint()
        for _ in range(reader.uint()):
            clock, length = reader.uint(), reader.uint()
            edges.add((client, clock))
            edges.add((client, clock + length))
    return structs, edges


def _read_struct(reader: _Reader, edges: set[tuple[int, int]]) -> tuple[int, str | None]:
    info = reader.byte()
    ref = info & 0x1F
    if ref in (GC, SKIP):
        return reader.uint(), None
    if info & 0x80:  # origin: Yjs splits after the item it points at
        client, clock = reader.uint(), reader.uint()
        edges.add((client, clock + 1))
    if info & 0x40:  # right origin: split before it
        edges.add((reader.uint(), reader.uint()))
    if not info & 0xC0:
        if reader.uint() == 1:
            reader.buffer()  # a root type's name
        else:
            reader.uint(), reader.uint()  # the parent item's id
        if info & 0x20:
            reader.buffer()  # parentSub (a map key)
    return _read_content(reader, ref)


def _read_content(reader: _Reader, ref: int) -> tuple[int, str | None]:
    if ref == STRING:
        text = reader.string()
        return _utf16_length(text), text
    if ref == DELETED:
        return reader.uint(), None
    if ref == JSON:
        count = reader.count()
        for _ in range(count):
            reader.buffer()
        return count, None
    if ref == ANY:
        count = reader.count()
        for _ in range(count):
            reader.skip_any()
        return count, None
    if ref in (BINARY, EMBED):
        reader.buffer()
    elif ref == FORMAT:
        reader.buffer(), reader.buffer()
    elif ref == TYPE:
        if reader.uint() in (_XML_ELEMENT, _XML_HOOK):
            reader.buffer()
    elif ref == DOC:
        reader.buffer()
        reader.skip_any()
    else:
        raise ValueError(f"unknown Yjs content type {ref}")
    return 1, None


def splits_surrogate_pair(updates: list[bytes]) -> bool:
    """Whether Yjs may split a string of ``updates`` inside a surrogate pair.

    True when some update points between the two halves of a character
    outside the BMP in a string item (of any update), or when an update
    cannot be read (then the exact, slower squash is the safe one).
    """
    if not any(_FOUR_BYTE_LEAD.search(update) for update in updates):
        return False
    edges: set[tuple[int, int]] = set()
    strings = []
    try:
        for update in updates:
            structs, found = read_update(update)
            edges |= found
            strings += [s for s in structs if s[3] is not None and _ASTRAL.search(s[3])]
    except (ValueError, IndexError):
        return True
    for client, clock, _length, text in strings:
        offset = 0
        for char in text:
            offset += 1
            if char > "\uffff":
                if (client, clock + offset) in edges:
                    return True
                offset += 1
    return False
