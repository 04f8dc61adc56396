"""What ``authorize`` allowed one connection, remembered until a revocation.

The server (``DocSyncServer.sync`` and ``check``) consults a connection's
:class:`Grants` before asking ``authorize`` again; every revocation message
(``docsync.revocation``) clears it.
"""

from __future__ import annotations

from typing import Any


def reads(kind: str, req: dict[str, Any]) -> bool:
    """Whether a request only reads (so that a ``"view"`` grant covers it)."""
    if kind == "presence":
        return True
    return kind == "sync" and not req.get("operations") and req.get("serializedDoc") is None


class Grants:
    """What ``authorize`` allowed one connection, remembered until a revocation.

    ``authorize`` may set ``event["grant"]`` when it allows a request on an
    existing document: ``"view"`` (the user may read it until access is
    revoked) or ``("owner", pk)`` (the user may also write it for as long as
    the document's ``owner_id`` is ``pk``, which each write checks on the row
    it locks). The connection then skips ``authorize`` for such requests;
    every revocation message (``docsync.revocation``) clears what it holds.
    Decisions that could change without a revocation message (a share
    downgraded by ``QuerySet.update()``) are never remembered.
    """

    __slots__ = ("_docs", "generation")

    def __init__(self) -> None:
        self._docs: dict[str, Any] = {}
        #: Bumped by every clear: a decision taken before it is not kept.
        self.generation = 0

    def get(self, doc_id: str) -> Any:
        return self._docs.get(doc_id)

    def add(self, doc_id: str, grant: Any, generation: int) -> None:
        if grant is None or generation != self.generation:
            return
        if grant == "view" and self._docs.get(doc_id) is not None:
            return  # an owner's grant covers reading
        self._docs[doc_id] = grant

    def forget(self, doc_id: str) -> None:
        self._docs.pop(doc_id, None)
        self.generation += 1

    def clear(self) -> None:
        self._docs.clear()
        self.generation += 1
