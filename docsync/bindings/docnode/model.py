"""The live document: a tree of nodes, loaded from and written to a snapshot.

Siblings form a doubly linked list, as in the library, so inserting, moving
and deleting a range costs the size of the range, not of the sibling list.
Each node's state maps a key to its *written* form (the JSON text the library
stores), since that is all a squash ever reads back.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .jsformat import JSONParseError, js_keys, js_parse
from .schema import DocSchema, StateDef


class _Undefined:
    """The value of a state key the node type does not define (see §4 patch)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


class Node:
    """One node: id, type, state (key -> written JSON text) and tree links."""

    __slots__ = ("id", "type", "state", "parent", "prev", "next", "first", "last")

    def __init__(self, node_id: str, node_type: str) -> None:
        self.id = node_id
        self.type = node_type
        self.state: dict[str, Any] = {}
        self.parent: Node | None = None
        self.prev: Node | None = None
        self.next: Node | None = None
        self.first: Node | None = None
        self.last: Node | None = None

    def __repr__(self) -> str:
        return f"<Node {self.id!r} {self.type!r}>"

    def children(self) -> Iterator[Node]:
        child = self.first
        while child is not None:
            yield child
            child = child.next

    def subtree(self) -> Iterator[Node]:
        """Yield this node and its descendants in pre-order, without recursion."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))


class DocNodeDoc:
    """A live DocNode document: the node tree plus the apply step's state.

    ``tx_open``, ``undo_ops``, ``undo_states``, ``inserted`` and ``deleted``
    mirror the library's open transaction, undo log and diff (see apply.py);
    ``aborts`` counts rollbacks, like the vectors' ``aborts`` field.
    ``broken`` is set when a rollback could not finish: the document is then
    unusable (the library itself never returns from that state).
    """

    def __init__(self, schema: DocSchema, root: Node) -> None:
        self.schema = schema
        self.root = root
        self.nodes: dict[str, Node] = {root.id: root}
        self.tx_open = False
        self.undo_ops: list[list[Any]] = []
        self.undo_states: dict[str, dict[str, str]] = {}
        self.inserted: set[str] = set()
        self.deleted: set[str] = set()
        self.aborts = 0
        self.broken: str | None = None

    @property
    def id(self) -> str:
        return self.root.id

    def get(self, ref: Any) -> Node | None:
        """Return the node an operation refers to; ``0`` (any falsy ref) is none."""
        return self.nodes.get(ref) if ref else None

    def ref(self, node: Node | None) -> str | int:
        """Return how an operation names ``node`` as a parent: ``0`` for the root."""
        return 0 if node is None or node is self.root else node.id


# -- tree surgery ------------------------------------------------------------


def sibling_range(start: Node, end: Node) -> list[Node] | None:
    """Return start..end if ``end`` is ``start`` or a later sibling, else None."""
    nodes = [start]
    node: Node | None = start
    while node is not end:
        node = node.next if node is not None else None
        if node is None:
            return None
        nodes.append(node)
    return nodes


def chain(nodes: list[Node]) -> None:
    """Link fresh nodes to each other as consecutive siblings."""
    for left, right in zip(nodes, nodes[1:], strict=False):
        left.next, right.prev = right, left


def link(first: Node, last: Node, parent: Node, prev: Node | None) -> None:
    """Attach the chained range first..last into ``parent`` right after ``prev``."""
    after = prev.next if prev is not None else parent.first
    first.prev, last.next = prev, after
    if prev is None:
        parent.first = first
    else:
        prev.next = first
    if after is None:
        parent.last = last
    else:
        after.prev = last
    node: Node | None = first
    while node is not None and node is not after:
        node.parent = parent
        node = node.next


def unlink(first: Node, last: Node) -> None:
    """Detach the sibling range first..last from its parent (it stays chained)."""
    parent = first.parent
    assert parent is not None, "the root is never detached"
    before, after = first.prev, last.next
    if before is None:
        parent.first = after
    else:
        before.next = after
    if after is None:
        parent.last = before
    else:
        after.prev = before
    first.prev = last.next = None


# -- snapshot in and out -----------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a whole tree is built.

    Loading or dumping makes a few containers per node and frees none, so
    each collection would only rescan the growing tree: that doubles the
    time at 100k nodes. Collection resumes as soon as the tree is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def load_doc(schema: DocSchema, entry: Any) -> DocNodeDoc:
    """Build a live doc from a serialized one (``Doc.fromJSON`` + commit).

    Raises ``ValueError`` for a malformed snapshot, with the library's
    message for unregistered types and state keys. Nodes are created in the
    library's order (a node's children, then each child's subtree in turn),
    so a snapshot with several problems reports the same one first.
    """
    with _gc_paused():
        return _load(schema, entry)


def _load(schema: DocSchema, entry: Any) -> DocNodeDoc:
    root = _node_from_entry(schema, entry, "root")
    if root.type != schema.doc_type:
        raise ValueError(
            f"The snapshot's root has type {root.type!r}, but this binding "
            f"serves documents of type {schema.doc_type!r}."
        )
    doc = DocNodeDoc(schema, root)
    stack = [(root, _children_of(entry))]
    while stack:
        parent, entries = stack.pop()
        nodes = [_node_from_entry(schema, item, "node") for item in entries]
        if not nodes:
            continue
        for node in nodes:
            _add_loaded(doc, node)
        chain(nodes)
        link(nodes[0], nodes[-1], parent, None)
        pairs = zip(nodes, map(_children_of, entries), strict=True)
        stack.extend(reversed(list(pairs)))
    return doc


def _add_loaded(doc: DocNodeDoc, node: Node) -> None:
    if node.id in doc.nodes:
        raise ValueError(
            f"Node '{node.id}' cannot be inserted because it already exists in the doc."
        )
    if node.type == doc.schema.doc_type:
        raise ValueError(
            f"Node {node.id!r} has the document type {node.type!r}; only the root may have it."
        )
    doc.nodes[node.id] = node


def _node_from_entry(schema: DocSchema, entry: Any, what: str) -> Node:
    if not isinstance(entry, (list, tuple)) or len(entry) not in (3, 4):
        raise ValueError(
            f"A {what} entry must be [id, type, state] or [id, type, state, "
            f"children], got {entry!r:.200}."
        )
    node_id, node_type, state = entry[0], entry[1], entry[2]
    if not isinstance(node_id, str) or not isinstance(node_type, str):
        raise ValueError(f"A {what} entry's id and type must be strings: {entry!r:.200}.")
    if not schema.is_registered(node_type):
        raise ValueError(
            f"Attempted to create a node of type '{node_type}' that was not registered."
        )
    if not isinstance(state, dict):
        raise ValueError(f"The state of node {node_id!r} must be an object, got {state!r:.200}.")
    node = Node(node_id, node_type)
    node.state = _load_state(schema, node, state)
    return node


def _load_state(schema: DocSchema, node: Node, state: dict[str, Any]) -> dict[str, str]:
    defs = schema.state_defs(node.type)
    loaded: dict[str, str] = {}
    for key in js_keys(state):
        text = state[key]
        if not isinstance(text, str):
            raise ValueError(
                f"State {key!r} of node {node.id!r} must be a string of JSON text, "
                f"got {text!r:.100}."
            )
        if key not in defs:
            _parse_first(node, key, text)
            raise ValueError(
                f"Attempted to create a node of type '{node.type}' with a state "
                f"that is not registered: {key}"
            )
        loaded[key] = _written(defs[key], node, key, text)
    return loaded


def _parse_first(node: Node, key: str, text: str) -> None:
    """Parse a value whose key is unknown: the library parses before it looks up."""
    try:
        js_parse(text)
    except JSONParseError as exc:
        raise ValueError(f"State {key!r} of node {node.id!r} is not valid JSON: {exc}") from None
    except RecursionError:
        pass


def _written(state_def: StateDef, node: Node, key: str, text: str) -> str:
    try:
        return state_def.written_from_text(text)
    except JSONParseError as exc:
        raise ValueError(f"State {key!r} of node {node.id!r} is not valid JSON: {exc}") from None
    except RecursionError:
        return state_def.default_string  # valid JSON, too deep for Python: of no kind


def _children_of(entry: Any) -> list[Any]:
    if len(entry) < 4:
        return []
    children = entry[3]
    if children is None:  # never written, but the library reads it as no children
        return []
    if not isinstance(children, (list, tuple)):
        raise ValueError(f"The children of node {entry[0]!r} must be an array.")
    return list(children)


def dump_doc(doc: DocNodeDoc) -> list[Any]:
    """Return the serialized doc (``toJSON({unsafe: true})``) as a JSON value.

    Raises ``ValueError`` when a node holds a state key its type does not
    define, with the library's message.
    """
    with _gc_paused():
        return _dump(doc)


def _dump(doc: DocNodeDoc) -> list[Any]:
    top = _entry(doc, doc.root)
    stack = [(doc.root, top)]
    while stack:
        node, entry = stack.pop()
        if node.first is None:
            continue
        pairs = [(child, _entry(doc, child)) for child in node.children()]
        entry.append([child_entry for _, child_entry in pairs])
        stack.extend(pairs)
    return top


def _entry(doc: DocNodeDoc, node: Node) -> list[Any]:
    return [node.id, node.type, written_state(doc.schema, node)]


class UndefinedState(ValueError):
    """A node holds a state key its type does not define: it cannot be written."""


def written_state(schema: DocSchema, node: Node) -> dict[str, str]:
    """Return the node's non-default written states, in the library's key order.

    Raises ``UndefinedState`` for a key the type does not define, with the
    library's message.
    """
    defs = schema.state_defs(node.type)
    out: dict[str, str] = {}
    for key in js_keys(node.state):
        value = node.state[key]
        if value is UNDEFINED:
            raise UndefinedState(
                f"The JSON serialization for state {key} on a node of type "
                f"{node.type} is undefined."
            )
        if value != defs[key].default_string:
            out[key] = value
    return out
