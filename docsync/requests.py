"""The client's requests (``sync``, ``presence``, ``unsubscribe-doc``,
``delete-doc``): their payloads, validated into small dataclasses.

A new client event is one parser here and one handler in
``docsync.consumers`` (its ``handlers`` table).

Every check raises ``ValidationError`` with a message naming the field, what
it must be and what arrived, so a client developer can fix the request from
the error alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .exceptions import ValidationError
from .payload import DEFAULT_MAX_DEPTH, check_depth
from .protocol import count_attachments

#: The longest docId, type, deviceId or clientId (the database columns').
MAX_ID_LENGTH = 255

#: The largest clock (JavaScript's Number.MAX_SAFE_INTEGER; the columns take 2**63).
MAX_CLOCK = 2**53 - 1

_json_size = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    return type(value).__name__


def _payload(data: Any, event: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(f"The {event} payload must be an object, got {_describe(data)}.")
    return data


def _identifier(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        if field not in data:
            raise ValidationError(f"{field} is required (a non-empty string).")
        raise ValidationError(f"{field} must be a non-empty string, got {_describe(value)}.")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(
            f"{field} is too long ({len(value)} characters, at most {MAX_ID_LENGTH})."
        )
    return value


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A ``sync`` request (PROTOCOL §4)."""

    doc_type: str
    doc_id: str
    operations: list[Any]
    serialized_doc: Any
    clock: int

    def as_wire(self) -> dict[str, Any]:
        """The request with the protocol's field names (for events and authorize)."""
        return {
            "type": self.doc_type,
            "docId": self.doc_id,
            "operations": self.operations,
            "serializedDoc": self.serialized_doc,
            "clock": self.clock,
        }


def parse_sync(data: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> SyncRequest:
    """Validate a sync request; its operations nest at most ``max_depth`` in the frame.

    The snapshot's depth is checked only if it is stored (``docsync.sync``).
    """
    data = _payload(data, "sync")
    doc_type = _identifier(data, "type")
    doc_id = _identifier(data, "docId")
    if "operations" not in data:
        raise ValidationError("operations is required (an array of operations, possibly empty).")
    operations = data["operations"]
    if not isinstance(operations, list):
        raise ValidationError(f"operations must be an array, got {_describe(operations)}.")
    check_depth(operations, max_depth, ("operations",), level=3)
    clock = data.get("clock", 0)
    if isinstance(clock, bool) or not isinstance(clock, int) or clock < 0:
        if isinstance(clock, float) and clock.is_integer() and clock >= 0:
            clock = int(clock)
        else:
            raise ValidationError(f"clock must be a non-negative integer, got {clock!r:.40}.")
    if clock > MAX_CLOCK:
        raise ValidationError(f"clock must be at most {MAX_CLOCK}, got {str(clock)[:40]}.")
    return SyncRequest(doc_type, doc_id, operations, data.get("serializedDoc"), clock)


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    """A ``presence`` request: any JSON value, or null to clear."""

    doc_id: str
    presence: Any


def parse_presence(
    data: Any, max_size: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH
) -> PresenceRequest:
    """Validate a presence request: its value at most ``max_size`` bytes as JSON
    and ``max_depth`` deep in the frame (strings and numbers were checked as the
    frame was decoded, ``docsync.payload``).
    """
    data = _payload(data, "presence")
    doc_id = _identifier(data, "docId")
    if "presence" not in data:
        raise ValidationError("presence is required (any JSON value, or null to clear it).")
    presence = data["presence"]
    if count_attachments(presence):
        raise ValidationError("presence must be a JSON value, without binary data.")
    check_depth(presence, max_depth, ("presence",), level=3)
    if max_size is not None and presence is not None:
        size = len(_json_size(presence).encode("utf-8", "surrogatepass"))
        if size > max_size:
            raise ValidationError(
                f"presence is too large ({size} bytes as JSON, at most {max_size}: "
                "MAX_PRESENCE); send a cursor or a selection, not a document."
            )
    return PresenceRequest(doc_id, presence)


@dataclass(frozen=True, slots=True)
class DocRequest:
    """An ``unsubscribe-doc`` or ``delete-doc`` request."""

    doc_id: str


def parse_doc_request(data: Any, event: str) -> DocRequest:
    return DocRequest(_identifier(_payload(data, event), "docId"))
