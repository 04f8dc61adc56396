"""Shape checks for ``Operations`` values received from clients.

The library trusts its input; a server must not. A value that is not shaped
like ``[ordered, patch]`` is refused with ``ValueError`` before the document
is touched, so a malformed batch can never half-apply.
"""

from __future__ import annotations

from typing import Any

_ARITY = {0: 5, 1: 3, 2: 6}
_NAMES = {0: "insert", 1: "delete", 2: "move"}


def parse_operations(operations: Any) -> tuple[list[list[Any]], dict[str, dict[str, str]]]:
    """Return ``(ordered, patch)`` from an ``Operations`` value, or raise ValueError."""
    if not isinstance(operations, (list, tuple)) or len(operations) != 2:
        raise ValueError(
            f"A DocNode operations value must be [ordered operations, state patch], "
            f"got {operations!r:.200}."
        )
    ordered, patch = operations
    if not isinstance(ordered, (list, tuple)):
        raise ValueError(f"The ordered operations must be an array, got {ordered!r:.200}.")
    checked = [_check_operation(index, op) for index, op in enumerate(ordered)]
    return checked, _check_patch(patch)


def _check_operation(index: int, op: Any) -> list[Any]:
    where = f"Operation #{index}"
    if not isinstance(op, (list, tuple)) or not op or type(op[0]) is not int:
        raise ValueError(f"{where} must be an array starting with 0, 1 or 2: {op!r:.200}.")
    arity = _ARITY.get(op[0])
    if arity is None or len(op) != arity:
        raise ValueError(
            f"{where}: an {_NAMES.get(op[0], 'unknown')} operation has {arity} "
            f"items, got {op!r:.200}."
        )
    if op[0] == 0:
        _check_specs(where, op[1])
    else:
        _check_id(where, op[1])
    for ref in op[2:]:
        _check_ref(where, ref)
    return list(op)


def _check_specs(where: str, specs: Any) -> None:
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"{where}: the inserted nodes must be an array of [id, type].")
    for spec in specs:
        if (
            not isinstance(spec, (list, tuple))
            or len(spec) != 2
            or not all(isinstance(part, str) for part in spec)
        ):
            raise ValueError(f"{where}: each inserted node must be [id, type], got {spec!r:.200}.")


def _check_id(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{where}: the range start must be a node id, got {value!r:.100}.")


def _check_ref(where: str, value: Any) -> None:
    # 0 means "none" (or the root, for an insert's parent); JavaScript treats
    # null and "" the same way, so they are accepted as 0.
    if isinstance(value, str) or value is None or (type(value) is int and value == 0):
        return
    raise ValueError(f"{where}: node references must be ids or 0, got {value!r:.100}.")


def _check_patch(patch: Any) -> dict[str, dict[str, str]]:
    if not isinstance(patch, dict):
        raise ValueError(f"The state patch must be an object, got {patch!r:.200}.")
    for node_id, values in patch.items():
        if not isinstance(values, dict) or not all(
            isinstance(key, str) and isinstance(text, str) for key, text in values.items()
        ):
            raise ValueError(
                f"The state patch of node {node_id!r} must map keys to JSON text strings."
            )
    return patch
