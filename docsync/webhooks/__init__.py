"""Webhooks: signed HTTP calls to other systems when documents and connections change.

Importing this package imports no models; see ``docs/webhooks.md``.

* :func:`verify_signature` (``docsync.webhooks.signing``): what a receiver runs.
* :func:`document_restored`: the hook a restore calls inside its transaction.
* ``docsync.webhooks.pump.attach``: gives a server you build yourself its pump.
"""

from __future__ import annotations

from typing import Any

from .signing import SignatureError, sign, verify_signature

__all__ = [
    "SignatureError",
    "document_restored",
    "enqueue",
    "restored_on",
    "sign",
    "verify_signature",
]


def enqueue(
    event_type: str, data: dict[str, Any], *, doc_id: str = "", using: str = "default"
) -> int:
    """Write an event to the outbox of database ``using``; return the rows written.

    ``data`` (JSON values) is the event's ``data``.

    Call it inside the transaction of the change it announces: the event is
    then sent if and only if that transaction commits.
    """
    from ..conf import docsync_settings
    from .outbox import admin_receivers, write_events
    from .types import settings_receivers

    receivers = settings_receivers(docsync_settings.WEBHOOKS) + admin_receivers(using)
    return write_events(using, [(event_type, doc_id, data)], receivers)


def document_restored(doc_id: str, *, using: str = "default", **data: Any) -> int:
    """Announce that ``doc_id`` was restored (``document.restored``, with ``data``).

    For a restore to an earlier version (``docsync.history``); call it
    inside the restore's transaction. An undeleted document needs no call:
    its row shows it, and the pump announces it.
    """
    return enqueue("document.restored", {"doc_id": doc_id, **data}, doc_id=doc_id, using=using)


def restored_on(provider: Any, doc_id: str, **data: Any) -> int:
    """:func:`document_restored` on ``provider``'s database; nothing for a provider
    that keeps no database (``docsync.history.restore_document`` calls it)."""
    using = getattr(provider, "using", None)
    if not isinstance(using, str):
        return 0
    return document_restored(doc_id, using=using, **data)
