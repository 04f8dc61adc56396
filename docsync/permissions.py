"""Authorization: may this user do this to this document?

``authorize(event)`` receives ``{type, req, userId, context}`` with ``type``
one of ``sync``, ``presence``, ``delete-doc``, ``unsubscribe-doc``, runs in
the request's database hop, and returns a bool.

The default, :class:`DocumentPermissions`, asks Django's permission system,
object by object: ``user.has_perm("docsync.view_document", document)`` and
so on, on a user fetched anew for every decision (a permission revoked a
second ago counts; ``ModelBackend`` caches permissions on the user object).
A connection remembers reads and an owner's writes it was allowed
(:meth:`DocumentPermissions.grant`, ``docsync.grants.Grants``) until a
revocation message reaches it.
Which backend answers is the project's choice: ``ModelBackend`` for
superusers, ``docsync.backends.DocumentPermissionBackend`` for owners and
shares, django-guardian or django-rules for their own rules.

======================  =============================================
request                 permission
======================  =============================================
sync, no operations     ``docsync.view_document``
sync with operations    ``docsync.change_document``
sync, new document      any active user may create it (and owns it);
                        a read of a missing document is refused
presence                ``docsync.view_document``
delete-doc              ``docsync.delete_document``
unsubscribe-doc         always allowed
======================  =============================================

A user who may not view a document gets ``Access denied`` for every request
on it, exactly as for a document that does not exist.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model

from .hops import nonblocking
from .identity import user_pk_of
from .utils import user_pk

logger = logging.getLogger(__name__)


class DocumentPermissions:
    """``authorize`` through ``user.has_perm(permission, document)``.

    Subclass to change the mapping (:meth:`required_permission`), who may
    create documents (:meth:`may_create`) or how the user and the document
    are found (:meth:`get_user`, :meth:`get_document`); then point
    ``DOCSYNC["AUTHORIZE"]`` at an instance.
    """

    view_permission = "docsync.view_document"
    change_permission = "docsync.change_document"
    delete_permission = "docsync.delete_document"
    add_permission = "docsync.add_document"
    #: By default any active user may create a document (and becomes its
    #: owner); set to True to require ``add_permission`` (model level).
    create_requires_permission = False
    #: Tells the server to read the document once and pass it as
    #: ``event["document"]`` (``BaseProvider.document_for_permissions``).
    loads_document = True

    def __call__(self, event: Any) -> bool:
        kind = event["type"]
        if kind == "unsubscribe-doc":
            return True  # leaving never needs a permission
        user = self.get_user(event)
        if user is None or not user.is_active:
            return False
        document = self.get_document(event)
        event["document"] = document
        if document is None:
            # Only a sync that stores something creates a document. Reading a
            # missing one is refused, exactly as reading someone else's: a
            # stranger cannot tell the two apart.
            return kind == "sync" and _creates(event["req"]) and self.may_create(user, event)
        perm = self.required_permission(kind, event["req"], document)
        if perm is None or not user.has_perm(perm, document):
            return False
        # A writer who may not read (an odd configuration) is still refused:
        # every answer to a sync carries the document.
        if perm != self.view_permission and kind == "sync" and not self._can_view(user, document):
            return False
        event["grant"] = self.grant(user, document, perm)
        return True

    def grant(self, user: Any, document: Any, perm: str) -> Any:
        """What the connection may remember of this decision (``DocSyncServer``'s ``Grants``).

        ``"view"`` after a read: revocations (share removed, group left, user
        deactivated, document made private) clear it. ``("owner", pk)`` when
        the user owns the document and ``DocumentPermissionBackend`` grants
        owners everything: each write checks the owner on the row it locks.
        ``("share", pk)`` when the user may write by a share (to them or a
        group of theirs) and ``("open", pk)`` when by ``OPEN_DOCUMENTS`` (the
        document is shared with nobody): a provider that can (``PostgresProvider``)
        checks that this still holds in the write's own transaction, since a
        share's role can be lowered without a signal; with other providers
        such writes are decided every time (the server keeps such a grant
        as ``"view"`` after a read). A read by a user who may also write
        gets the write's grant, so that the first write is not decided
        again. Return ``None`` to remember nothing.
        """
        if _owns(user, document) and _owners_may_do_everything():
            return ("owner", str(user.pk))
        writes = perm == self.change_permission or (
            perm == self.view_permission and user.has_perm(self.change_permission, document)
        )
        if writes and _owners_may_do_everything():
            # Also after a read, so that the first write needs no decision.
            grant = _write_grant(user, document)
            if grant is not None:
                return grant
        return "view" if perm == self.view_permission else None

    def _can_view(self, user: Any, document: Any) -> bool:
        return bool(user.has_perm(self.view_permission, document))

    def required_permission(self, kind: str, req: Any, document: Any) -> str | None:
        """The permission ``kind`` needs on an existing ``document`` (None: refuse)."""
        if kind == "sync":
            if req.get("operations"):
                return self.change_permission
            if req.get("serializedDoc") is not None and not _has_snapshot(document):
                # The server would store the client's snapshot: a write.
                return self.change_permission
            return self.view_permission
        if kind == "presence":
            return self.view_permission
        if kind == "delete-doc":
            return self.delete_permission
        return None

    def may_create(self, user: Any, event: Any) -> bool:
        """Whether ``user`` may create the document ``event`` names."""
        if self.create_requires_permission:
            return bool(user.has_perm(self.add_permission))
        return True

    def get_user(self, event: Any) -> Any | None:
        """The user behind the connection, fetched anew (never cached)."""
        return fetch_user(user_pk_of(event.get("context"), event.get("userId")))

    def get_document(self, event: Any) -> Any | None:
        """The ``Document`` the request is about, or ``None`` if it does not exist.

        The server passes it as ``event["document"]`` (a ``Document`` row for
        ``ORMProvider``, an unsaved one with the owner for other providers).
        Called with an event that has none (your own code), it reads the row
        from the default database.
        """
        if "document" in event:
            return event["document"]
        doc_id = event["req"].get("docId")
        if not isinstance(doc_id, str):
            return None
        return load_document(None, doc_id)


def fetch_user(pk: Any) -> Any | None:
    """The user whose primary key is ``pk``, or ``None`` (unknown, malformed)."""
    pk = user_pk(pk)
    if pk is None:
        return None
    return get_user_model()._default_manager.filter(pk=pk).first()


def load_document(provider: Any, doc_id: str) -> Any | None:
    """The ``Document`` ``doc_id`` as ``provider`` stores it (``None``: the
    default database's ``ORMProvider``), or ``None``."""
    if provider is None:
        from .providers.orm import ORMProvider

        provider = ORMProvider()
    return provider.document_for_permissions(doc_id)


def _owns(user: Any, document: Any) -> bool:
    owner_id = getattr(document, "owner_id", None)
    return owner_id is not None and str(owner_id) == str(user.pk)


def _write_grant(user: Any, document: Any) -> Any:
    """``("share", pk)`` / ``("open", pk)``: why a non-owner may write (see ``grant``)."""
    from .backends import DocumentPermissionBackend
    from .models import Document

    if not isinstance(document, Document):
        return None
    by = DocumentPermissionBackend().writes_by(user, document)
    return None if by is None else (by, str(user.pk))


def _owners_may_do_everything() -> bool:
    """Whether an authentication backend gives owners every permission."""
    from django.contrib.auth import get_backends

    from .backends import DocumentPermissionBackend

    return any(isinstance(backend, DocumentPermissionBackend) for backend in get_backends())


def _creates(req: Any) -> bool:
    return bool(req.get("operations")) or req.get("serializedDoc") is not None


def _has_snapshot(document: Any) -> bool:
    if hasattr(document, "_has_snapshot"):
        return bool(document._has_snapshot)
    return bool(getattr(document, "snapshot_format", "x"))


#: The default ``DOCSYNC["AUTHORIZE"]``.
authorize = DocumentPermissions()


@nonblocking
def allow_all(event: Any) -> bool:
    """Allow every request (tests and demos)."""
    return True
