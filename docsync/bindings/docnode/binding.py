"""``DocNodeBinding``: squash DocNode documents the way the JavaScript library does."""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..base import BaseBinding
from .apply import apply_operations
from .describe import describe_operations
from .jsformat import js_dumps_strings, js_keys
from .model import DocNodeDoc, Node, dump_doc, load_doc
from .schema import build_schema, options_from_description
from .validate import parse_operations

# The library's default id scheme only accepts a lowercase ULID as doc id.
_LOWERCASE_ULID = re.compile(r"[0-7][0-9abcdefghjkmnp-tv-z]{25}")


class DocNodeBinding(BaseBinding):
    """Binding for DocNode (``@docukit/docnode`` 0.4.0) documents.

    Reproduces the library's serialized form and ``applyOperations`` byte for
    byte, rollback quirks included, in pure Python. Configure one binding
    per document type::

        DOCSYNC = {
            "BINDINGS": {
                "note": {
                    "class": "docsync.bindings.docnode.DocNodeBinding",
                    "options": {
                        "doc_type": "note",
                        "nodes": {
                            "note": {"title": {"kind": "string", "default": ""}},
                            "paragraph": {"text": {"kind": "string"}},
                            "todo": {
                                "done": {"kind": "boolean", "default": False},
                                "order": {"kind": "number", "default": 0},
                            },
                        },
                    },
                }
            }
        }

    ``doc_type`` is the document type, which is also the root node's type.
    ``nodes`` maps each node type to its state keys; a key has a ``kind``
    (``"string"``, ``"number"`` or ``"boolean"``) and an optional
    ``default`` (``""``, ``0`` or ``False`` when left out), as the library's
    ``string(d)``, ``number(d)`` and ``boolean(d)`` helpers. Listing the doc
    type in ``nodes`` gives the root its state keys. ``check_doc_ids``
    (default True) refuses document ids other than lowercase ULIDs in
    ``create`` and ``deserialize``, as the library does.

    Live documents are ``DocNodeDoc`` objects; snapshots are JSON values
    (``serialize``) whose exact JavaScript text is ``dumps``.
    """

    def __init__(
        self,
        *,
        doc_type: str | None = None,
        nodes: dict[str, Any] | None = None,
        check_doc_ids: bool = True,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ImproperlyConfigured(
                f"DocNodeBinding got unknown options {sorted(unknown)}: it accepts "
                "'doc_type', 'nodes' and 'check_doc_ids'."
            )
        if doc_type is None or nodes is None:
            raise ImproperlyConfigured(
                "DocNodeBinding needs the options 'doc_type' (the document type) and "
                "'nodes' (node type -> state definitions), e.g. "
                "{'doc_type': 'doc', 'nodes': {'p': {'text': {'kind': 'string'}}}}."
            )
        if not isinstance(check_doc_ids, bool):
            raise ImproperlyConfigured(
                f"DocNodeBinding option 'check_doc_ids' must be True or False, "
                f"got {check_doc_ids!r}."
            )
        self.schema = build_schema(doc_type, nodes)
        self.check_doc_ids = check_doc_ids

    @classmethod
    def from_description(cls, config: dict[str, Any], **options: Any) -> DocNodeBinding:
        """Build a binding from a golden vector's ``config`` description."""
        return cls(**options_from_description(config), **options)

    @property
    def doc_type(self) -> str:
        return self.schema.doc_type

    def create(self, doc_type: str, doc_id: str) -> DocNodeDoc:
        """Return a new empty document; it serializes as ``[doc_id, doc_type, {}]``."""
        if doc_type != self.doc_type:
            raise ValueError(
                f"This DocNode binding serves documents of type {self.doc_type!r}, "
                f"not {doc_type!r}."
            )
        self._check_doc_id(doc_id)
        return DocNodeDoc(self.schema, Node(doc_id, doc_type))

    def deserialize(self, serialized_doc: Any) -> DocNodeDoc:
        """Load a snapshot (a JSON value, or its text); ValueError if corrupt."""
        if isinstance(serialized_doc, (bytes, bytearray, memoryview)):
            serialized_doc = bytes(serialized_doc).decode("utf-8")
        if isinstance(serialized_doc, str):
            try:
                serialized_doc = json.loads(serialized_doc)
            except json.JSONDecodeError as exc:
                raise ValueError(f"The DocNode snapshot is not JSON: {exc}") from None
        if isinstance(serialized_doc, (list, tuple)) and serialized_doc:
            self._check_doc_id(serialized_doc[0])  # first, as the library does
        return load_doc(self.schema, serialized_doc)

    def serialize(self, doc: DocNodeDoc) -> list[Any]:
        """Return the snapshot as a JSON value (``toJSON({unsafe: true})``)."""
        self._check_doc(doc)
        return dump_doc(doc)

    def dumps(self, doc: DocNodeDoc) -> str:
        """Return the snapshot as the exact text ``JSON.stringify`` writes."""
        return js_dumps_strings(self.serialize(doc))

    def apply_operations(self, doc: DocNodeDoc, operations: Any) -> None:
        """Apply one ``Operations`` value (one ``applyOperations`` call).

        A rejected operation inside it is rolled back as the library does, not
        raised. ``ValueError`` means the value is malformed (nothing changed)
        or a rollback could not complete, where the library never returns
        (the document is then unusable and must be discarded).
        """
        self._check_doc(doc)
        apply_operations(doc, operations)

    def validate_operations(self, operations: Any) -> None:
        """Refuse a value not shaped like ``[ordered operations, state patch]``."""
        parse_operations(operations)

    def validate_snapshot(self, serialized_doc: Any) -> None:
        """Refuse a snapshot ``deserialize`` cannot load."""
        self.deserialize(serialized_doc)

    def render(self, serialized_doc: Any) -> str:
        """Return an indented tree: one line per node, with its non-default state."""
        try:
            return "\n".join(_render_lines(serialized_doc))
        except (TypeError, ValueError, IndexError, AttributeError):
            return super().render(serialized_doc)

    def render_operations(self, operations: Any) -> str:
        """Return one line per operation (``insert p n1 after n0``, ``n1.text = "Hi"``)."""
        try:
            return "\n".join(describe_operations(operations))
        except ValueError as exc:
            return f"{super().render_operations(operations)}\n(not DocNode operations: {exc})"

    def _check_doc_id(self, doc_id: Any) -> None:
        if not self.check_doc_ids:
            return
        if not isinstance(doc_id, str) or not _LOWERCASE_ULID.fullmatch(doc_id):
            # The library's message; check_doc_ids=False lifts the rule.
            raise ValueError(f"Invalid document id: {doc_id}. It must be a lowercase ULID.")

    def _check_doc(self, doc: Any) -> None:
        if not isinstance(doc, DocNodeDoc) or doc.schema is not self.schema:
            raise TypeError(f"Expected a DocNodeDoc made by this binding, got {doc!r:.100}.")
        if doc.broken:
            raise ValueError(f"This document can no longer be used: {doc.broken}")


def _render_lines(entry: Any) -> list[str]:
    """Lines like ``  p  n1  text="Hi"``, indented two spaces per level."""
    if isinstance(entry, str):
        entry = json.loads(entry)
    lines: list[str] = []
    stack = [(entry, 0)]
    while stack:
        item, depth = stack.pop()
        node_id, node_type, state = item[0], item[1], item[2]
        values = "  ".join(f"{key}={state[key]}" for key in js_keys(state))
        lines.append(f"{'  ' * depth}{node_type}  {node_id}  {values}".rstrip())
        children = item[3] if len(item) > 3 else []
        stack.extend((child, depth + 1) for child in reversed(children))
    return lines
