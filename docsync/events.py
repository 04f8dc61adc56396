"""Client payloads, validated into small dataclasses.

Every check raises ``ValidationError`` with a message naming the field, what
it must be and what arrived, so a client developer can fix the request from
the error alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .exceptions import ValidationError

MAX_ID_LENGTH = 255


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


def parse_sync(data: Any) -> SyncRequest:
    data = _payload(data, "sync")
    doc_type = _identifier(data, "type")
    doc_id = _identifier(data, "docId")
    if "operations" not in data:
        raise ValidationError("operations is required (an array of operations, possibly empty).")
    operations = data["operations"]
    if not isinstance(operations, list):
        raise ValidationError(f"operations must be an array, got {_describe(operations)}.")
    clock = data.get("clock", 0)
    if isinstance(clock, bool) or not isinstance(clock, int) or clock < 0:
        if isinstance(clock, float) and clock.is_integer() and clock >= 0:
            clock = int(clock)
        else:
            raise ValidationError(f"clock must be a non-negative integer, got {clock!r}.")
    return SyncRequest(doc_type, doc_id, operations, data.get("serializedDoc"), clock)


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    """A ``presence`` request: any JSON value, or null to clear."""

    doc_id: str
    presence: Any


def parse_presence(data: Any) -> PresenceRequest:
    data = _payload(data, "presence")
    doc_id = _identifier(data, "docId")
    if "presence" not in data:
        raise ValidationError("presence is required (any JSON value, or null to clear it).")
    return PresenceRequest(doc_id, data["presence"])


@dataclass(frozen=True, slots=True)
class DocRequest:
    """An ``unsubscribe-doc`` or ``delete-doc`` request."""

    doc_id: str


def parse_doc_request(data: Any, event: str) -> DocRequest:
    return DocRequest(_identifier(_payload(data, event), "docId"))
