"""Authorization: may this user do this to this document?

``authorize(event)`` receives ``{type, req, userId, context}`` with ``type``
one of ``sync``, ``presence``, ``delete-doc``, ``unsubscribe-doc``, runs in
the request's database hop, and returns a bool.
"""

from __future__ import annotations

from typing import Any

from .server import nonblocking


@nonblocking
def authorize(event: Any) -> bool:
    """Default: any authenticated connection may do anything."""
    return event["userId"] is not None


@nonblocking
def allow_all(event: Any) -> bool:
    """Allow every request (tests and demos)."""
    return True
