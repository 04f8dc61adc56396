"""Node definitions: which node types exist and what state each one keeps.

A schema is built once, from plain Python (the binding's options) or from a
golden vector's ``config`` description, and validated on the way in: a bad
configuration raises ``ImproperlyConfigured`` naming what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .jsformat import js_number, js_parse, js_string

KINDS = ("string", "number", "boolean")
# JSON text that JSON.stringify would write back unchanged (see js_string).
_PLAIN_STRING = re.compile(r'"[^"\\\x00-\x1f\ud800-\udfff]*"')
_SMALL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")
_NATURAL_DEFAULTS: dict[str, Any] = {"string": "", "number": 0, "boolean": False}


@dataclass(frozen=True)
class StateDef:
    """One state key: its kind, default, and the default's written form."""

    kind: str
    default: Any
    default_string: str

    def written_from_text(self, text: str) -> str:
        """Parse stored JSON text with ``JSON.parse`` and this kind; return it written.

        Raises ``JSONParseError`` (a ValueError) when ``text`` is not JSON, and
        ``RecursionError`` when it nests deeper than Python's parser allows.
        """
        # Fast paths for text already in written form, the common case: a
        # plain string, a small integer, or a boolean's 0/1.
        if self.kind == "string" and _PLAIN_STRING.fullmatch(text):
            return text
        if self.kind != "string" and _SMALL_INT.fullmatch(text):
            return self.written_from_json(float(text))
        return self.written_from_json(js_parse(text))

    def written_from_json(self, value: Any) -> str:
        """Parse a ``JSON.parse`` result with this kind; return its written form.

        A value of the wrong JSON type becomes the default, as in the library.
        """
        if self.kind == "string" and isinstance(value, str):
            return js_string(value)
        if self.kind == "number" and type(value) is float:
            return js_number(value)
        if self.kind == "boolean" and type(value) is float and value in (0, 1):
            return "1" if value else "0"
        return self.default_string


@dataclass(frozen=True)
class DocSchema:
    """The document type (root node type) and every node type's state keys."""

    doc_type: str
    nodes: dict[str, dict[str, StateDef]]

    def state_defs(self, node_type: str) -> dict[str, StateDef]:
        """Return the state keys of ``node_type`` (empty when it has none)."""
        return self.nodes.get(node_type, {})

    def is_registered(self, node_type: str) -> bool:
        return node_type in self.nodes


def build_schema(doc_type: Any, nodes: Any) -> DocSchema:
    """Validate the binding options and return a schema.

    ``nodes`` maps node type -> {state key -> {"kind", "default"}}. The doc
    type is always registered: listing it only gives the root state keys.
    """
    if not isinstance(doc_type, str) or not doc_type:
        raise ImproperlyConfigured(
            f"DocNodeBinding option 'doc_type' must be a non-empty string, "
            f"got {doc_type!r}: set it to the document type this binding serves."
        )
    if not isinstance(nodes, dict):
        raise ImproperlyConfigured(
            f"DocNodeBinding option 'nodes' must be a dict of node type -> state "
            f"definitions, got {type(nodes).__name__}."
        )
    defs = {name: _node_states(name, states) for name, states in nodes.items()}
    defs.setdefault(doc_type, {})
    return DocSchema(doc_type, defs)


def _node_states(node_type: Any, states: Any) -> dict[str, StateDef]:
    if not isinstance(node_type, str) or not node_type:
        raise ImproperlyConfigured(
            f"DocNodeBinding 'nodes' keys must be non-empty strings (node types), "
            f"got {node_type!r}."
        )
    if not isinstance(states, dict):
        raise ImproperlyConfigured(
            f"DocNodeBinding nodes[{node_type!r}] must be a dict of state key -> "
            f"{{'kind': ..., 'default': ...}}, got {states!r}; use {{}} for no state."
        )
    return {key: _state_def(node_type, key, spec) for key, spec in states.items()}


def _state_def(node_type: str, key: Any, spec: Any) -> StateDef:
    where = f"DocNodeBinding nodes[{node_type!r}][{key!r}]"
    if not isinstance(key, str) or not key:
        raise ImproperlyConfigured(f"{where}: state keys must be non-empty strings.")
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        raise ImproperlyConfigured(
            f"{where} must be a dict with 'kind' one of {', '.join(KINDS)}, got {spec!r}."
        )
    unknown = sorted(set(spec) - {"kind", "default"})
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown keys {unknown}: only 'kind' and 'default' are allowed."
        )
    kind = spec["kind"]
    default = spec.get("default", _NATURAL_DEFAULTS[kind])
    _check_default(where, kind, default)
    if kind == "number":
        default = float(default)
    return StateDef(kind, default, write_value(kind, default))


def write_value(kind: str, value: Any) -> str:
    """Return the written form (JSON text) of a stored value of ``kind``.

    Booleans are written as the numbers 0 and 1, never ``true``/``false``.
    """
    if kind == "string":
        return js_string(value)
    if kind == "number":
        return js_number(value)
    return "1" if value else "0"


def _check_default(where: str, kind: str, default: Any) -> None:
    if kind == "string":
        ok = isinstance(default, str)
    elif kind == "number":
        ok = type(default) in (int, float) and math.isfinite(default)
    else:
        ok = isinstance(default, bool)
    if not ok:
        raise ImproperlyConfigured(
            f"{where}: default {default!r} does not fit kind {kind!r} "
            "(string: a str, number: a finite int or float, boolean: True or False)."
        )


def options_from_description(config: dict[str, Any]) -> dict[str, Any]:
    """Turn a golden vector's ``config`` description into binding options.

    Checks each ``defaultString`` against the one computed here, so a
    formatting mismatch shows up as a configuration error, not a wrong doc.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for entry in config["nodes"]:
        states = entry.get("state", {})
        nodes[entry["type"]] = {
            key: {"kind": spec["kind"], "default": spec["default"]} for key, spec in states.items()
        }
    schema = build_schema(config["type"], nodes)
    for entry in config["nodes"]:
        for key, spec in entry.get("state", {}).items():
            mine = schema.nodes[entry["type"]][key].default_string
            if "defaultString" in spec and spec["defaultString"] != mine:
                raise ImproperlyConfigured(
                    f"State {entry['type']}.{key}: the description's defaultString "
                    f"{spec['defaultString']!r} differs from the computed {mine!r}."
                )
    return {"doc_type": config["type"], "nodes": nodes}
