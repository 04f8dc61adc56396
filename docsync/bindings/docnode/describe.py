"""Operations as a person reads them: one line per insert, delete, move and state change.

Used by the admin to show pending batches. It reads the value with the same
shape checks as the apply step (``validate``), so what it shows is what a
squash would apply.
"""

from __future__ import annotations

from typing import Any

from .jsformat import js_keys
from .validate import parse_operations


def describe_operations(operations: Any) -> list[str]:
    """Return lines such as ``insert p n1 at the end of the root`` and ``n1.text = "Hi"``.

    Raises ``ValueError`` when ``operations`` is not a DocNode operations value.
    """
    ordered, patch = parse_operations(operations)
    lines = [_describe(op) for op in ordered]
    for node_id in js_keys(patch):
        values = patch[node_id]
        lines.extend(f"{node_id}.{key} = {values[key]}" for key in js_keys(values))
    return lines or ["(no changes)"]


def _describe(op: list[Any]) -> str:
    if op[0] == 0:
        _, specs, parent, prev, next_ = op
        nodes = ", ".join(f"{node_type} {node_id}" for node_id, node_type in specs)
        return f"insert {nodes} {_place(parent, prev, next_)}"
    if op[0] == 1:
        return f"delete {_range(op[1], op[2])}"
    _, start, end, parent, prev, next_ = op
    return f"move {_range(start, end)} {_place(parent, prev, next_)}"


def _range(start: str, end: Any) -> str:
    return f"{start} … {end}" if end and end != start else start


def _place(parent: Any, prev: Any, next_: Any) -> str:
    if prev:
        return f"after {prev}"
    if next_:
        return f"before {next_}"
    return f"at the end of {parent or 'the root'}"
