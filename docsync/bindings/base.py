"""The binding contract, and the registry that picks a binding per doc type.

The server treats documents and operations as opaque values: it only needs
a binding to *squash*, that is, to fold a document's log into its snapshot.
A binding knows one CRDT (DocNode, Yjs ...): how to make an empty document,
load and store a snapshot, apply one operations value, and show a document
to a human in the admin.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


class BaseBinding:
    """Base class of document bindings. Subclasses implement the first four."""

    def create(self, doc_type: str, doc_id: str) -> Any:
        """Return a new, empty live document of ``doc_type`` with id ``doc_id``."""
        raise NotImplementedError(".create() must be implemented.")

    def deserialize(self, serialized_doc: Any) -> Any:
        """Return a live document loaded from a stored snapshot.

        Raise ``ValueError`` when the snapshot is corrupt.
        """
        raise NotImplementedError(".deserialize() must be implemented.")

    def serialize(self, doc: Any) -> Any:
        """Return the snapshot of a live document (a JSON value or bytes)."""
        raise NotImplementedError(".serialize() must be implemented.")

    def apply_operations(self, doc: Any, operations: Any) -> None:
        """Apply one operations value (one element of a sync's list) to ``doc``.

        Raise ``ValueError`` when the binding rejects it.
        """
        raise NotImplementedError(".apply_operations() must be implemented.")

    def validate_operations(self, operations: Any) -> None:
        """Check one operations value a client sent, before anything is stored.

        Raise ``ValueError`` saying what is wrong when ``apply_operations``
        could never apply it: the sync is refused with a ``ValidationError``
        naming the value, so the log never holds what a squash cannot fold.
        It runs on every sync: check the shape, cheaply. Accepts all by default.
        """

    def validate_snapshot(self, serialized_doc: Any) -> None:
        """Check a snapshot a client creates a document with, before it is stored.

        Raise ``ValueError`` when ``deserialize`` could not load it. Accepts
        all by default.
        """

    def render(self, serialized_doc: Any) -> str:
        """Return a human-readable rendering of a snapshot (for the admin)."""
        if isinstance(serialized_doc, (bytes, bytearray, memoryview)):
            return f"<{len(serialized_doc)} bytes>"
        return json.dumps(serialized_doc, indent=2, ensure_ascii=False)

    def to_json(self, serialized_doc: Any) -> Any:
        """Return a snapshot as a JSON value (the REST API's ``state``).

        The default returns a JSON snapshot as it is, and bytes as
        ``{"base64": ..., "bytes": n}``; bindings of binary documents show
        their content instead.
        """
        if isinstance(serialized_doc, (bytes, bytearray, memoryview)):
            data = bytes(serialized_doc)
            return {"base64": base64.b64encode(data).decode("ascii"), "bytes": len(data)}
        return serialized_doc

    def render_operations(self, operations: Any) -> str:
        """Return a human-readable rendering of one operations value (for the admin).

        The default is compact JSON (bytes as their size and first bytes);
        bindings that know their operations describe them instead.
        """
        if isinstance(operations, (bytes, bytearray, memoryview)):
            head = bytes(operations[:32]).hex()
            return f"<{len(operations)} bytes> {head}{'…' if len(operations) > 32 else ''}"
        if isinstance(operations, list) and any(
            isinstance(item, (bytes, bytearray, memoryview)) for item in operations
        ):
            return "[" + ", ".join(self.render_operations(item) for item in operations) + "]"
        return json.dumps(operations, ensure_ascii=False, default=repr)

    def squash(
        self,
        serialized_doc: Any,
        operations: Iterable[Any],
        *,
        doc_type: str,
        doc_id: str,
    ) -> Any:
        """Fold ``operations`` (oldest first) into ``serialized_doc``.

        ``serialized_doc`` may be ``None`` (the document has no snapshot yet).
        Returns the new snapshot; raises and changes nothing on failure.
        """
        if serialized_doc is None:
            doc = self.create(doc_type, doc_id)
        else:
            doc = self.deserialize(serialized_doc)
        for value in operations:
            self.apply_operations(doc, value)
        return self.serialize(doc)


class BindingRegistry:
    """Maps document types to bindings; refuses to register a type twice."""

    def __init__(self, default: BaseBinding | None = None) -> None:
        self._bindings: dict[str, BaseBinding] = {}
        self.default = default

    def register(self, doc_type: str, binding: BaseBinding) -> None:
        if doc_type in self._bindings:
            raise ImproperlyConfigured(
                f"Document type {doc_type!r} already has a binding "
                f"({type(self._bindings[doc_type]).__name__}); a type has one binding."
            )
        self._bindings[doc_type] = binding

    def get(self, doc_type: str) -> BaseBinding | None:
        """Return the binding of ``doc_type``, the default one, or ``None``."""
        return self._bindings.get(doc_type, self.default)

    def __contains__(self, doc_type: str) -> bool:
        return doc_type in self._bindings

    @classmethod
    def from_settings(cls, bindings: dict[str, Any], default: Any) -> BindingRegistry:
        """Build a registry from ``DOCSYNC["BINDINGS"]`` / ``["DEFAULT_BINDING"]``."""
        registry = cls(default=load_binding(default, "DEFAULT_BINDING"))
        for doc_type, spec in (bindings or {}).items():
            binding = load_binding(spec, f"BINDINGS[{doc_type!r}]")
            if binding is None:
                raise ImproperlyConfigured(
                    f"DOCSYNC[BINDINGS[{doc_type!r}]] is None: name a binding, or remove the type."
                )
            registry.register(doc_type, binding)
        return registry


def load_binding(spec: Any, where: str) -> BaseBinding | None:
    """Turn a settings value (instance, class, dotted path, or dict) into a binding."""
    if spec is None or isinstance(spec, BaseBinding):
        return spec
    options: dict[str, Any] = {}
    if isinstance(spec, dict):
        if "class" not in spec:
            raise ImproperlyConfigured(
                f"DOCSYNC[{where}] is a dict without a 'class' key: "
                "use {'class': 'dotted.path.Binding', 'options': {...}}."
            )
        options = spec.get("options", {})
        spec = spec["class"]
    if isinstance(spec, str):
        try:
            spec = import_string(spec)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"Could not import binding {spec!r} for DOCSYNC[{where}]: {exc}"
            ) from exc
    binding = spec(**options) if isinstance(spec, type) else spec
    if not isinstance(binding, BaseBinding):
        raise ImproperlyConfigured(
            f"DOCSYNC[{where}] must be a docsync.bindings.BaseBinding, got {binding!r}."
        )
    return binding


def get_binding_registry() -> BindingRegistry:
    """The registry built from the ``DOCSYNC`` settings."""
    from docsync.conf import docsync_settings

    return BindingRegistry.from_settings(
        docsync_settings.BINDINGS, docsync_settings.DEFAULT_BINDING
    )
