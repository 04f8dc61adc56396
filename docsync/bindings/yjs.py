"""The Yjs binding: snapshots and operations are Yjs updates, read with pycrdt.

A snapshot is the whole document as one update (format v1) and each
operations value is one update, as Yjs clients send them. Squashing applies
the updates to a pycrdt ``Doc`` and writes its state back as one update: that
is fast, and deleted content is dropped. ``Doc.get_update()`` leaves out
updates that wait for one the server has not seen (they build on it), and
dropping them would lose a client's edits, so the binding remembers what each
live document received and ``serialize()`` merges in what is still waiting.
``pycrdt.merge_updates`` is not used for everything: it is slower, and the
updates it produces are slow for pycrdt to load (each small insert stays a
separate struct). It is used where a ``Doc`` would change the document:
when an update splits a string between the halves of a surrogate pair,
which Yjs allows and yrs does differently (``docsync.bindings.yjs_update``).

pycrdt is optional (``pip install docsync[yjs]``); it is imported when a
binding is made, so importing this module never needs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from django.core.exceptions import ImproperlyConfigured

from .base import BaseBinding
from .yjs_update import splits_surrogate_pair

#: Root types accepted by the ``roots`` option, and the pycrdt class of each.
ROOT_TYPES = {
    "text": "Text",
    "array": "Array",
    "map": "Map",
    "xml_fragment": "XmlFragment",
    "xml_text": "XmlText",
}

MISSING_PYCRDT = "The Yjs binding needs pycrdt: pip install pycrdt (or pip install docsync[yjs])"

UPDATE_TYPES = (bytes, bytearray, memoryview)

# pycrdt.merge_updates(*updates) takes time quadratic in len(updates); merging
# groups of this many, then the results, is as exact and ~50x faster at 10k.
MERGE_GROUP = 16


def import_pycrdt() -> Any:
    """Return the pycrdt module, or raise ImproperlyConfigured naming the package."""
    try:
        import pycrdt
    except ImportError as exc:
        raise ImproperlyConfigured(MISSING_PYCRDT) from exc
    return pycrdt


class YjsBinding(BaseBinding):
    """Binding for Yjs documents, on pycrdt.

    ``roots`` maps root names to their type (``"text"``, ``"array"``,
    ``"map"``, ``"xml_fragment"`` or ``"xml_text"``); it is only used to show
    documents in the admin, as Yjs updates do not record root types.
    """

    def __init__(self, roots: Mapping[str, str] | None = None, **unknown: Any) -> None:
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown YjsBinding option(s) {', '.join(map(repr, sorted(unknown)))}"
                ": the only option is 'roots', e.g. {'roots': {'content': 'text'}}."
            )
        self.roots = check_roots(roots)
        self.pycrdt = import_pycrdt()
        # Updates applied to each live document since serialize() last ran.
        self.received: WeakKeyDictionary[Any, list[bytes]] = WeakKeyDictionary()

    def create(self, doc_type: str, doc_id: str) -> Any:
        doc = self.pycrdt.Doc()
        self.received[doc] = []
        return doc

    def deserialize(self, serialized_doc: Any) -> Any:
        return self.load([("The snapshot", serialized_doc)])

    def serialize(self, doc: Any) -> bytes:
        """Return the document as one update, with the updates that wait in it."""
        waiting = self.waiting_parts(self.received.get(doc, []), doc)
        self.received[doc] = waiting  # the rest is in the document now
        return self.merge([doc.get_update(), *waiting])

    def apply_operations(self, doc: Any, operations: Any) -> None:
        self.apply(doc, "The operations", as_update(operations, "The operations"))

    def validate_operations(self, operations: Any) -> None:
        """Refuse a value that is not bytes pycrdt can decode as a Yjs update."""
        self.decode(as_update(operations, "An operations value"), "The operations value")

    def validate_snapshot(self, serialized_doc: Any) -> None:
        """Refuse a snapshot that is not bytes pycrdt can decode as a Yjs update."""
        self.decode(as_update(serialized_doc, "The snapshot"), "The snapshot")

    def decode(self, update: bytes, what: str) -> None:
        """Raise ValueError unless pycrdt decodes ``update`` (without applying it)."""
        try:
            self.pycrdt.get_state(update)
        except Exception as exc:
            raise ValueError(f"{what} is not a valid Yjs update ({exc}).") from exc
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":  # a Rust panic in pycrdt
                raise
            raise ValueError(f"{what} is not a valid Yjs update ({exc}).") from exc

    def squash(
        self,
        serialized_doc: Any,
        operations: Iterable[Any],
        *,
        doc_type: str,
        doc_id: str,
    ) -> bytes:
        """Fold ``operations`` into ``serialized_doc``; errors say which value is bad."""
        updates = [] if serialized_doc is None else [("The snapshot", serialized_doc)]
        updates += [(f"Operations value {i}", v) for i, v in enumerate(operations)]
        checked = [(what, as_update(value, what)) for what, value in updates]
        if splits_surrogate_pair([update for _, update in checked]):
            # A pycrdt Doc would split that pair differently from Yjs and
            # change the text: merge the updates as they are (exact, slower).
            for what, update in checked:
                self.decode(update, what)
            return self.merge([update for _, update in checked])
        return self.serialize(self.load(checked))

    def merge_operations(self, operations: list[Any]) -> list[Any]:
        """Return ``operations`` as one update, for a response that must be short.

        Applying the merged update is the same as applying each of them (updates
        commute, and ones that wait for a missing update keep waiting in it).
        A value that is not bytes, or that pycrdt cannot merge, leaves the
        list as it was.
        """
        if len(operations) < 2 or not all(isinstance(v, UPDATE_TYPES) for v in operations):
            return operations
        try:
            return [self.merge([bytes(value) for value in operations])]
        except Exception:
            return operations
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":  # a Rust panic in pycrdt
                raise
            return operations

    def load(self, updates: list[tuple[str, Any]]) -> Any:
        """Return a new document with ``(what, update)`` pairs applied, all checked first."""
        checked = [(what, as_update(value, what)) for what, value in updates]
        doc = self.create("", "")
        for what, update in checked:
            self.apply(doc, what, update)
        return doc

    def apply(self, doc: Any, what: str, update: bytes) -> None:
        apply_update(doc, update, what)
        # pycrdt's Doc.get_update() leaves out updates that wait for one the
        # server has not seen: remember them so serialize() can keep them.
        self.received.setdefault(doc, []).append(update)

    def merge(self, updates: list[bytes]) -> bytes:
        """Merge updates into one, in groups: one ``merge_updates`` call is quadratic."""
        while len(updates) > 1:
            groups = range(0, len(updates), MERGE_GROUP)
            updates = [self.pycrdt.merge_updates(*updates[i : i + MERGE_GROUP]) for i in groups]
        return updates[0]

    def waiting_parts(self, updates: list[bytes], doc: Any) -> list[bytes]:
        """Return what of ``updates`` ``doc`` holds back, waiting for missing updates."""
        state_bytes = doc.get_state()
        state = read_state_vector(state_bytes)
        parts = []
        for update in updates:
            part = self.pycrdt.get_update(update, state_bytes)
            if not is_integrated(part, state):
                parts.append(part)
        return parts

    def render(self, serialized_doc: Any) -> str:
        """Show the document's roots as indented JSON, after its size in bytes."""
        try:
            doc = self.deserialize(serialized_doc)
        except ValueError as exc:
            return f"<unreadable Yjs snapshot: {exc}>"
        data = bytes(serialized_doc)
        header = f"Yjs document, {len(data)} bytes"
        if self.waiting_parts([data], doc):
            header += " (some changes wait for updates the server has not seen)"
        content = {name: self.render_root(doc, name) for name in sorted(doc.keys())}
        return f"{header}\n{json.dumps(content, indent=2, ensure_ascii=False)}"

    def to_json(self, serialized_doc: Any) -> Any:
        """The document's roots as JSON (``{"content": "Hello"}``), as the admin shows them."""
        if serialized_doc is None:
            return None
        doc = self.deserialize(serialized_doc)
        return {name: self.render_root(doc, name) for name in sorted(doc.keys())}

    def render_root(self, doc: Any, name: str) -> Any:
        """Return a JSON-able view of root ``name``, typed if ``roots`` names it."""
        kind = self.roots.get(name)
        if kind is None:
            return self.guess_root(doc, name)
        shared = doc.get(name, type=getattr(self.pycrdt, ROOT_TYPES[kind]))
        if kind in ("array", "map"):
            return to_plain(shared)
        return str(shared)

    def guess_root(self, doc: Any, name: str) -> Any:
        """Best effort for a root of unknown type: try each type until one has content."""
        y = self.pycrdt
        text = str(doc.get(name, type=y.Text))
        if text:
            return text
        entries = doc.get(name, type=y.Map)
        if len(entries):
            return to_plain(entries)
        items = doc.get(name, type=y.Array)
        try:
            return items.to_py() and to_plain(items)
        except ValueError:  # XML nodes have no Python equivalent.
            return str(doc.get(name, type=y.XmlFragment))


def check_roots(roots: Any) -> dict[str, str]:
    """Validate the ``roots`` option; raise ImproperlyConfigured naming the problem."""
    if roots is None:
        return {}
    choices = ", ".join(map(repr, ROOT_TYPES))
    if not isinstance(roots, Mapping):
        raise ImproperlyConfigured(
            "YjsBinding option 'roots' must be a dict of root name to type, e.g. "
            f"{{'content': 'text'}}, got {type(roots).__name__}."
        )
    for name, kind in roots.items():
        if not isinstance(name, str) or not name:
            raise ImproperlyConfigured(
                f"YjsBinding option 'roots' has the key {name!r}: root names are non-empty strings."
            )
        if kind not in ROOT_TYPES:
            raise ImproperlyConfigured(
                f"YjsBinding option 'roots' gives root {name!r} the type {kind!r}: "
                f"use one of {choices}."
            )
    return dict(roots)


def as_update(value: Any, what: str) -> bytes:
    """Return ``value`` as bytes, or raise ValueError naming its type."""
    if not isinstance(value, UPDATE_TYPES):
        raise ValueError(f"{what} must be a Yjs update (bytes), got {type(value).__name__}.")
    return bytes(value)


def apply_update(doc: Any, update: bytes, what: str) -> None:
    """Apply ``update`` to ``doc``; raise ValueError if pycrdt cannot read it."""
    try:
        doc.apply_update(update)
    except Exception as exc:
        raise ValueError(f"{what} is not a valid Yjs update ({exc}).") from exc
    except BaseException as exc:
        # pyo3 turns a Rust panic into PanicException, a BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        raise ValueError(f"{what} is not a valid Yjs update ({exc}).") from exc


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """Read one lib0 variable-length unsigned integer; return it and the next pos."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def read_state_vector(state: bytes) -> dict[int, int]:
    """Decode a state vector (v1): client id -> next expected clock."""
    count, pos = read_varuint(state, 0)
    clocks = {}
    for _ in range(count):
        client, pos = read_varuint(state, pos)
        clocks[client], pos = read_varuint(state, pos)
    return clocks


def is_integrated(diff: bytes, state: dict[int, int]) -> bool:
    """Whether ``diff`` (an update minus a doc's state) adds nothing to that doc.

    True when it has no structs left and deletes only what the doc holds.
    """
    try:
        structs, pos = read_varuint(diff, 0)
        if structs:
            return False
        clients, pos = read_varuint(diff, pos)
        for _ in range(clients):
            client, pos = read_varuint(diff, pos)
            ranges, pos = read_varuint(diff, pos)
            for _ in range(ranges):
                clock, pos = read_varuint(diff, pos)
                length, pos = read_varuint(diff, pos)
                if clock + length > state.get(client, 0):
                    return False
    except IndexError:  # Unreadable: keep it rather than lose it.
        return False
    return True


def to_plain(shared: Any) -> Any:
    """A JSON-able copy of a pycrdt Array or Map (numbers tidied, bytes sized)."""
    try:
        value = shared.to_py()
    except ValueError:  # Holds XML nodes: fall back on yrs's own JSON.
        try:
            value = json.loads(str(shared))
        except ValueError:
            return str(shared)
    return tidy(value)


def tidy(value: Any) -> Any:
    """Make ``value`` JSON-able and readable: 1.0 -> 1, bytes -> '<n bytes>'."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, UPDATE_TYPES):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(key): tidy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tidy(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
