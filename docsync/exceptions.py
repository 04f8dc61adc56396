"""One tree of errors that policy code raises and the consumer answers.

``DocSyncError.wire_type`` is the ``error.type`` a client sees; the consumer
is the only place that turns an exception into ``{"error": {...}}``.
Configuration errors are ``ImproperlyConfigured`` and stay outside this tree
so that no per-request handler swallows them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .utils import deprecated_names


class DocSyncError(Exception):
    """Base class of every error a client may be told about."""

    wire_type = "DatabaseError"
    default_message = "The request failed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class AuthenticationFailed(DocSyncError):
    """The handshake could not establish who is connecting."""

    wire_type = "AuthenticationError"
    default_message = "Authentication failed: invalid credentials"


class PermissionDenied(DocSyncError):
    """The user may not do this to this document (or it does not exist)."""

    wire_type = "AuthorizationError"
    default_message = "Access denied"


class ValidationError(DocSyncError):
    """The request's payload is malformed; the message names the field."""

    wire_type = "ValidationError"
    default_message = "Invalid request."


class InvalidValue(ValidationError):
    """A value holds what no document may hold (``docsync.payload``).

    ``path`` is where, as keys and indexes from the value's top; ``problem``
    says what is wrong. The message names the field as JavaScript writes it:
    ``operations[0].text contains a lone surrogate (\\ud800) ...``.
    """

    def __init__(self, path: Sequence[Any], problem: str) -> None:
        self.path = tuple(path)
        self.problem = problem
        super().__init__(f"{field_name(self.path)} {problem}.")

    def relative_to(self, prefix: Sequence[Any]) -> InvalidValue:
        """The same error, with ``path`` relative to ``prefix`` (when it starts with it)."""
        start = tuple(prefix)
        if self.path[: len(start)] != start:
            return self
        return InvalidValue(self.path[len(start) :], self.problem)


def field_name(path: Sequence[Any]) -> str:
    """``("operations", 0, "x")`` -> ``operations[0].x``; ``()`` -> ``The value``."""
    name, shown = "", path if len(path) <= 8 else path[:6]
    for part in shown:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part.isidentifier():
            name += f".{part}" if name else part
        else:
            name += "[" + json.dumps(part) + "]"
    if shown is not path:
        name += f"…({len(path) - 6} levels more)"
    return name or "The value"


class DocumentDeleted(ValidationError):
    """The document was deleted; a stale client may not bring it back."""

    def __init__(self, doc_id: str) -> None:
        super().__init__(
            f"Document {doc_id!r} has been deleted and cannot be synced again; "
            "discard the local copy."
        )


class DocumentNotFound(DocSyncError):
    """No document has this id (raised by the server-side code, ``docsync.history``).

    Over the socket a client is never told this (it reads as ``PermissionDenied``).
    """

    wire_type = "AuthorizationError"

    def __init__(self, doc_id: str) -> None:
        super().__init__(f"No document {doc_id!r}.")


class HistoryUnavailable(ValidationError):
    """The history asked for is not kept (pruned, or older than history)."""


class DocumentExists(ValidationError):
    """A document with this id exists already (creating it again: ``docsync.api``)."""

    def __init__(self, doc_id: str) -> None:
        super().__init__(f"Document {doc_id!r} already exists.")


class ProtocolError(DocSyncError):
    """A frame that breaks Engine.IO / Socket.IO framing."""

    wire_type = "ValidationError"


class StorageError(DocSyncError):
    """The provider failed (database unavailable, integrity error ...)."""

    wire_type = "DatabaseError"
    default_message = "The document could not be read or written; try again."


class StorageUnavailable(StorageError):
    """The storage cannot be reached (database stopped, connection lost).

    Retryable: the client tries again and succeeds once it is back. The
    message never carries the driver's text (``docsync.outage``).
    """

    default_message = "Storage is unavailable; try again shortly."


# The 0.1 spelling, still importable.
__getattr__ = deprecated_names(
    "docsync.exceptions", {"DocsyncError": ("DocSyncError", DocSyncError)}
)
