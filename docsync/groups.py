"""The channel layer's words: group names and the messages sent to them.

Every connection joins the group of each document it is subscribed to
(:func:`doc_group`) and the group of its user (:func:`user_group`). What
goes through the layer is one of the messages built here; the consumer
handles each ``type`` in the method of that name (``docsync.dirty`` →
``docsync_dirty``), on every process of a deployment.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

_GROUP_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,80}$")

#: Message types (the consumer's handler of ``docsync.dirty`` is ``docsync_dirty``).
DIRTY = "docsync.dirty"
PRESENCE = "docsync.presence"
COLLABORATION = "docsync.collaboration"
REVOKE = "docsync.revoke"


@lru_cache(maxsize=4096)  # asked on every request
def doc_group(doc_id: str) -> str:
    """The group of a document's subscribers (any docId maps to a valid name)."""
    return "docsync.doc." + hashlib.blake2b(doc_id.encode(), digest_size=16).hexdigest()


def user_group(user_pk: Any) -> str:
    """The group of every connection of the user ``user_pk`` (revocation)."""
    key = str(user_pk)
    if not _GROUP_NAME.match(key):
        key = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"docsync.user.{key}"


def session_hash(session_key: str) -> str:
    """A session key as revocation messages carry it (never the key itself)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def dirty(doc_id: str, device: str = "", clock: int | None = None) -> dict[str, Any]:
    """``doc_id`` changed: its subscribers resync.

    Connections of ``device`` skip it (they sent the change); ``""`` is no
    client's device, so every subscriber hears a change made on the server.
    ``clock``: the document's clock after a sync's write (``None`` for other
    changes), which tells every process that its memory of the document's
    newest batches is behind (``docsync.providers.tail``).
    """
    return {"type": DIRTY, "doc": doc_id, "device": device, "clock": clock}


def merge_dirty(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """One ``dirty`` that says what two writes' ``dirty`` say.

    Its device is the one of the newer write (the larger clock): that write's
    answer held every batch before it, so its device misses nothing; every
    other device hears it. Without both clocks (a change made on the server)
    every device hears it.
    """
    a, b = older.get("clock"), newer.get("clock")
    if a is None or b is None:
        return dirty(newer["doc"], "", None)
    last = newer if b >= a else older
    return dirty(last["doc"], last["device"], last["clock"])


def presence(doc_id: str, changes: dict[str, Any], skip: str = "") -> dict[str, Any]:
    """Presence of clients changed (``None``: gone); ``skip`` is the sender's channel."""
    return {"type": PRESENCE, "doc": doc_id, "presence": changes, "skip": skip}


def collaboration(doc_id: str, has: bool, skip: str) -> dict[str, Any]:
    """Whether ``doc_id`` has more than one user subscribed now."""
    return {"type": COLLABORATION, "doc": doc_id, "has": has, "skip": skip}


def revoke(**fields: Any) -> dict[str, Any]:
    """Access was taken away: ``recheck=True``, or ``close=reason`` (``docsync.revocation``)."""
    return {"type": REVOKE, **fields}
