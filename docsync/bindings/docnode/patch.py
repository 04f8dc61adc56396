"""The state patch of an ``Operations`` value, and the saved states of a rollback.

Every value is JSON text: it is parsed with ``JSON.parse`` and the key's kind
and stored in written form. Before a node's key first changes in a
transaction, its old written value is saved so a rollback can restore it.
"""

from __future__ import annotations

from typing import Any

from .errors import OperationFailed
from .jsformat import JSONParseError, js_keys, js_parse
from .model import UNDEFINED, DocNodeDoc, Node


def apply_patch(doc: DocNodeDoc, patch: dict[str, dict[str, str]], *, record: bool) -> None:
    """Apply a state patch; with ``record``, save undo values first (§5).

    Ids not in the doc are ignored. Text that is not JSON raises
    ``OperationFailed`` that stops the batch.
    """
    for node_id in js_keys(patch):
        node = doc.nodes.get(node_id)
        if node is None:
            continue
        values = patch[node_id]
        save = record and node_id not in doc.inserted
        for key in js_keys(values):
            if save:
                _save_state(doc, node, key)
            node.state[key] = _parse_state(doc, node, key, values[key])


def _save_state(doc: DocNodeDoc, node: Node, key: str) -> None:
    """Keep the key's written value from before its first change."""
    saved = doc.undo_states.setdefault(node.id, {})
    if saved.get(key, UNDEFINED) is not UNDEFINED:
        return
    if key not in node.state:
        state_def = doc.schema.state_defs(node.type).get(key)
        # An unknown key saves "undefined", which a rollback cannot parse.
        saved[key] = state_def.default_string if state_def else UNDEFINED
    elif node.state[key] is UNDEFINED:
        raise OperationFailed(
            f"The JSON serialization for state {key} on a node of type {node.type} is undefined.",
            stops=True,
        )
    else:
        saved[key] = node.state[key]


def _parse_state(doc: DocNodeDoc, node: Node, key: str, text: Any) -> Any:
    state_def = doc.schema.state_defs(node.type).get(key)
    if text is UNDEFINED:  # JSON.parse(undefined) throws
        raise OperationFailed(f"State {key!r} of {node.id!r}: undefined is not JSON", stops=True)
    try:
        if state_def is None:
            js_parse(text)  # still parsed: invalid text fails even here
            return UNDEFINED  # stored; serializing the doc will then fail (§4)
        return state_def.written_from_text(text)
    except JSONParseError as exc:
        raise OperationFailed(f"State {key!r} of {node.id!r}: {exc}", stops=True) from None
    except RecursionError:
        # Valid JSON nested too deep for Python's parser: not of any kind.
        return UNDEFINED if state_def is None else state_def.default_string
