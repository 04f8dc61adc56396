"""Tiny bindings for tests: a document is a list, each operations value is appended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docsync.bindings import BaseBinding


class ListBinding(BaseBinding):
    """Snapshot: a JSON list. Applying an operations value appends it.

    The value ``"boom"`` is rejected with ``ValueError`` (to test failures).
    """

    def create(self, doc_type: str, doc_id: str) -> list[Any]:
        return []

    def deserialize(self, serialized_doc: Any) -> list[Any]:
        if not isinstance(serialized_doc, list):
            raise ValueError(f"A list snapshot must be a list, not {serialized_doc!r}.")
        return list(serialized_doc)

    def serialize(self, doc: list[Any]) -> list[Any]:
        return list(doc)

    def apply_operations(self, doc: list[Any], operations: Any) -> None:
        if operations == "boom":
            raise ValueError("boom is not a valid operation")
        doc.append(operations)


class HookedListBinding(ListBinding):
    """A :class:`ListBinding` that calls ``hook()`` in the middle of a squash.

    Squashing folds with no lock held, so the hook can play a concurrent
    client (append a batch, squash, delete) between the squash's read and
    its write.
    """

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook = hook

    def squash(self, serialized_doc: Any, operations: Any, **kwargs: Any) -> Any:
        result = super().squash(serialized_doc, operations, **kwargs)
        self.hook()
        return result


class RenderingBinding(ListBinding):
    """A :class:`ListBinding` with its own admin rendering."""

    def render(self, serialized_doc: Any) -> str:
        return "LIST: " + " | ".join(str(value) for value in serialized_doc or [])
