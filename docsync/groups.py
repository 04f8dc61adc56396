"""Channel-layer group names and the messages sent to them.

Shared by the consumers that join the groups and by the code that tells them
something happened (a restore's ``dirty``), on any process.
"""

from __future__ import annotations

import hashlib
from typing import Any


def doc_group(doc_id: str) -> str:
    """The channel-layer group of a document (any docId maps to a valid name)."""
    return "docsync.doc." + hashlib.blake2b(doc_id.encode(), digest_size=16).hexdigest()


def dirty_message(doc_id: str, device: str = "") -> dict[str, Any]:
    """``docsync.dirty`` for the group of ``doc_id``: its subscribers resync.

    Connections of ``device`` skip it (they sent the change); ``""`` is no
    client's device, so every subscriber hears a change made on the server.
    """
    return {"type": "docsync.dirty", "doc": doc_id, "device": device}
