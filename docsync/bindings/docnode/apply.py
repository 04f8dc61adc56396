"""``applyOperations``: DocNode's apply step, rollbacks and their quirks included.

The semantics are the library's (README of the golden vectors, §4-§5), not
what a clean design would do: a failing operation rolls back the open
transaction by replaying its undo log *in recording order*, a failed insert
or unparsable patch stops the batch, and a patch applied after a rollback
leaks its undo entries into the next batch.
"""

from __future__ import annotations

from typing import Any

from .errors import OperationFailed, RollbackFailed
from .model import (
    DocNodeDoc,
    Node,
    UndefinedState,
    chain,
    link,
    sibling_range,
    unlink,
    written_state,
)
from .patch import apply_patch
from .validate import parse_operations

INSERT, DELETE, MOVE = 0, 1, 2


def apply_operations(doc: DocNodeDoc, operations: Any) -> None:
    """Apply one ``Operations`` value to ``doc``, as one ``applyOperations`` call.

    Raises ``ValueError`` (before changing anything) when ``operations`` is
    not shaped like an ``Operations`` value, and ``RollbackFailed`` when a
    rollback cannot complete; the doc is then marked broken.
    """
    ordered, patch = parse_operations(operations)
    if doc.broken:
        raise ValueError(f"This document can no longer be used: {doc.broken}")
    if not ordered and not patch:
        return
    doc.tx_open = True
    try:
        _run_ordered(doc, ordered)
        apply_patch(doc, patch, record=True)
    except OperationFailed as exc:
        for _ in range(exc.layers):
            rollback(doc)
        return
    if doc.tx_open:
        _close(doc)  # commit: the undo log is dropped


def _run_ordered(doc: DocNodeDoc, ordered: list[list[Any]]) -> None:
    for operation in ordered:
        try:
            run_operation(doc, operation)
        except OperationFailed as exc:
            if exc.stops:
                raise
            rollback(doc)  # a failed delete or move: the batch goes on


def run_operation(doc: DocNodeDoc, operation: list[Any]) -> None:
    """Apply one ordered operation; raise ``OperationFailed`` when rejected."""
    if operation[0] == INSERT:
        _insert(doc, *operation[1:])
    elif operation[0] == DELETE:
        _delete(doc, *operation[1:])
    else:
        _move(doc, *operation[1:])


# -- rollback ----------------------------------------------------------------


def rollback(doc: DocNodeDoc) -> None:
    """Undo the open transaction: replay the undo log in recording order.

    The library replays entries oldest first (not in reverse), then the saved
    states, with the normal rules; the quirks in README §5 follow from that.
    """
    doc.aborts += 1
    entries, states = doc.undo_ops, doc.undo_states
    _close(doc)
    try:
        for entry in entries:
            run_operation(doc, entry)
        apply_patch(doc, states, record=False)
    except OperationFailed as exc:
        # The library would start a nested rollback of the same log, fail the
        # same way, and never return; we stop and refuse the document instead.
        doc.broken = f"an undo entry failed during a rollback ({exc})"
        raise RollbackFailed(
            f"DocNode rollback cannot complete ({exc}): the JavaScript library "
            "never returns from this batch, so it cannot be applied."
        ) from None
    _close(doc)


def _close(doc: DocNodeDoc) -> None:
    """End the transaction (commit or after a rollback): drop log and diff."""
    doc.tx_open = False
    doc.undo_ops = []
    doc.undo_states = {}
    doc.inserted = set()
    doc.deleted = set()


# -- insert ------------------------------------------------------------------


def _insert(doc: DocNodeDoc, specs: list[Any], parent: Any, prev: Any, next_: Any) -> None:
    if not specs:
        return
    nodes = [_new_node(doc, node_id, node_type) for node_id, node_type in specs]
    place = _insert_place(doc, parent, prev, next_)
    if place is None:
        return  # no anchor left: the nodes are silently dropped
    _check_insertable(doc, nodes)
    doc.tx_open = True
    new_parent, new_prev = place
    if new_parent.id not in doc.inserted:
        last = nodes[-1].id if len(nodes) > 1 else 0
        doc.undo_ops.append([DELETE, nodes[0].id, last])
    chain(nodes)
    link(nodes[0], nodes[-1], new_parent, new_prev)
    _register(doc, nodes)


def _register(doc: DocNodeDoc, nodes: list[Node]) -> None:
    """Add inserted nodes to the id map and to this transaction's diff."""
    # The library attaches nodes placed before a sibling last-to-first, and
    # appended ones first-to-last; an id listed twice (never emitted) maps to
    # the node attached last, so the order is kept.
    order = reversed(nodes) if nodes[-1].next is not None else nodes
    for node in order:
        doc.nodes[node.id] = node
    for node in nodes:
        if node.id in doc.deleted:
            doc.deleted.discard(node.id)  # a re-insert is not "inserted"
        else:
            doc.inserted.add(node.id)


def _new_node(doc: DocNodeDoc, node_id: str, node_type: str) -> Node:
    if not doc.schema.is_registered(node_type):
        raise OperationFailed(
            f"Attempted to create a node of type '{node_type}' that was not registered.",
            stops=True,
        )
    return Node(node_id, node_type)


def _insert_place(
    doc: DocNodeDoc, parent: Any, prev: Any, next_: Any
) -> tuple[Node, Node | None] | None:
    """Return (parent, prev) for an insert: after prev, else before next, else append."""
    anchor = doc.get(prev)
    if anchor is not None:
        _refuse_root_anchor(doc, anchor, "after")
        return anchor.parent, anchor  # type: ignore[return-value]
    anchor = doc.get(next_)
    if anchor is not None:
        _refuse_root_anchor(doc, anchor, "before")
        return anchor.parent, anchor.prev  # type: ignore[return-value]
    target = doc.get(parent) if parent else doc.root
    return None if target is None else (target, target.last)


def _refuse_root_anchor(doc: DocNodeDoc, anchor: Node, where: str) -> None:
    if anchor is doc.root:
        raise OperationFailed(f"Cannot insert nodes {where} the root.", stops=True, layers=2)


def _check_insertable(doc: DocNodeDoc, nodes: list[Node]) -> None:
    for node in nodes:
        if node.id in doc.nodes:
            raise OperationFailed(f"Node {node.id!r} already exists.", stops=True, layers=2)
        if node.type == doc.schema.doc_type:
            raise OperationFailed(
                f"A node of the root type {node.type!r} cannot be inserted.",
                stops=True,
                layers=2,
            )


# -- delete ------------------------------------------------------------------


def _delete(doc: DocNodeDoc, start_ref: Any, end_ref: Any) -> None:
    start = doc.get(start_ref)
    if start is None:
        return  # already gone: silently skipped
    nodes = _existing_range(doc, start, end_ref)
    doc.tx_open = True
    parent = start.parent
    assert parent is not None
    record = parent.id not in doc.inserted
    inverse: list[list[Any]] = []
    if record:
        specs = [[node.id, node.type] for node in nodes]
        inverse.append([INSERT, specs, doc.ref(parent), _id(start.prev), _id(nodes[-1].next)])
    _forget_all(doc, nodes)
    unlink(nodes[0], nodes[-1])
    for node in nodes:
        for gone in node.subtree():
            _drop_subtree_node(doc, gone, inverse if record else None)
    # The re-inserts of child lists come first, deepest-last node first:
    # replayed in this order they run before their parents exist (§5 quirk).
    inverse.reverse()
    doc.undo_ops.extend(inverse)


def _existing_range(doc: DocNodeDoc, start: Node, end_ref: Any) -> list[Node]:
    end = doc.get(end_ref) if end_ref else start
    if end is None:
        raise OperationFailed(f"Range end {end_ref!r} does not exist.")
    if start is doc.root:
        raise OperationFailed("The root cannot be deleted or moved.")
    nodes = sibling_range(start, end)
    if nodes is None:
        raise OperationFailed(f"{end.id!r} is not {start.id!r} or a later sibling.")
    return nodes


def _drop_subtree_node(doc: DocNodeDoc, node: Node, inverse: list[list[Any]] | None) -> None:
    doc.nodes.pop(node.id, None)
    if node.first is not None and inverse is not None:
        children = [[child.id, child.type] for child in node.children()]
        inverse.append([INSERT, children, node.id, 0, 0])


def _forget_all(doc: DocNodeDoc, nodes: list[Node]) -> None:
    """Record the range and its descendants as deleted, before the tree changes.

    The library's order: the range first, then each child list in pre-order.
    Saving a state the type does not define fails the delete.
    """
    for node in nodes:
        _forget(doc, node)
    for node in nodes:
        for parent in node.subtree():
            for child in parent.children():
                _forget(doc, child)


def _forget(doc: DocNodeDoc, node: Node) -> None:
    """Record a deleted node in the diff, saving its state unless it is new."""
    if node.id in doc.inserted:
        doc.inserted.discard(node.id)
        return
    try:
        saved = written_state(doc.schema, node)
    except UndefinedState as exc:
        raise OperationFailed(str(exc)) from None
    saved.update(doc.undo_states.get(node.id, {}))  # earlier saves take precedence
    doc.undo_states[node.id] = saved
    doc.deleted.add(node.id)


def _id(node: Node | None) -> str | int:
    return 0 if node is None else node.id


# -- move --------------------------------------------------------------------


def _move(
    doc: DocNodeDoc, start_ref: Any, end_ref: Any, parent: Any, prev: Any, next_: Any
) -> None:
    start = doc.get(start_ref)
    end = doc.get(end_ref) if end_ref else start
    if start is None or end is None:
        return  # silently skipped
    doc.tx_open = True  # the library opens its transaction before any check
    where, target = _move_target(doc, parent, prev, next_)
    # Checked first, as the library does: a move "to where it already is"
    # succeeds even when start..end is not a valid range.
    if _already_there(start, end, target, where):
        return
    nodes = _existing_range(doc, start, end_ref)
    _check_move_target(doc, nodes, target, where)
    undo_end = 0 if end is start else end.id
    old = [doc.ref(start.parent), _id(start.prev), _id(end.next)]
    doc.undo_ops.append([MOVE, start.id, undo_end, *old])
    unlink(start, end)
    if where == "append":
        link(start, end, target, target.last)
    else:
        anchor = target if where == "after" else target.prev
        link(start, end, target.parent, anchor)  # type: ignore[arg-type]


def _move_target(doc: DocNodeDoc, parent: Any, prev: Any, next_: Any) -> tuple[str, Node]:
    """Pick after prev, else before next, else append to parent: no fallback.

    Unlike insert, a missing anchor fails, and parent 0 is not the root.
    """
    if prev:
        where, target = "after", doc.get(prev)
    elif next_:
        where, target = "before", doc.get(next_)
    else:
        where, target = "append", doc.get(parent)
    if target is None:
        raise OperationFailed(f"The node to move {where} does not exist.")
    return where, target


def _check_move_target(doc: DocNodeDoc, nodes: list[Node], target: Node, where: str) -> None:
    if where != "append" and target is doc.root:
        raise OperationFailed(f"Cannot move nodes {where} the root.")
    moving = set(nodes)
    node: Node | None = target
    while node is not None:
        if node in moving:
            raise OperationFailed("The move target is inside the moved range.")
        node = node.parent


def _already_there(start: Node, end: Node, target: Node, where: str) -> bool:
    if where == "after":
        return target.next is start
    if where == "before":
        return target.prev is end
    return target.last is end
