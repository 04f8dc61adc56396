"""``DocumentPermissionBackend``: object permissions on documents.

An authentication backend that authenticates nobody and answers
``user.has_perm("docsync.<action>_document", document)``: the owner may do
everything, others what their shares (``DocumentShare``, to them or to one of
their groups) grant. It answers only for a ``Document`` object, so it adds to
``ModelBackend`` (model-level permissions, superusers), django-guardian or
django-rules rather than replacing them::

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "docsync.backends.DocumentPermissionBackend",
    ]
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.db.models import Q

from .models import ROLE_PERMISSIONS, WRITE_ROLES, Document, DocumentShare

APP_LABEL = Document._meta.app_label
#: Every permission an owner has on their document.
OWNER_PERMISSIONS = frozenset(
    f"{action}_document" for action in ("add", "view", "change", "delete")
)

#: What everyone active may do to a document nobody has shared, with OPEN_DOCUMENTS.
OPEN_PERMISSIONS = frozenset({"view_document", "change_document"})

_CACHE = "_docsync_document_perm_cache"


def _open_documents() -> bool:
    from .conf import docsync_settings

    return bool(docsync_settings.OPEN_DOCUMENTS)


def _is_private(doc: Document) -> bool:
    """Private: marked so, or shared with someone (shares made in bulk send no signal)."""
    if doc.private or doc.pk is None:
        return doc.private
    return (
        DocumentShare.objects.using(doc._state.db or "default").filter(document_id=doc.pk).exists()
    )


def _same_pk(user: Any, owner_id: Any) -> bool:
    # str(): the in-memory provider's unsaved documents carry the userId string.
    return owner_id is not None and str(owner_id) == str(user.pk)


class DocumentPermissionBackend(BaseBackend):
    """Owner: every permission on their document; shares: what their role grants.

    Inactive and anonymous users get nothing. Answers are cached on the user
    object, which ``docsync.permissions.authorize`` fetches anew per request.
    """

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not isinstance(obj, Document) or not user_obj.is_active or user_obj.is_anonymous:
            return set()
        cache = user_obj.__dict__.setdefault(_CACHE, {})
        key = obj.pk if obj.pk is not None else ("unsaved", obj.doc_id)
        if key not in cache:
            cache[key] = {f"{APP_LABEL}.{codename}" for codename in self._codenames(user_obj, obj)}
        permissions: set[str] = cache[key]
        return permissions

    def get_user_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return self.get_all_permissions(user_obj, obj)

    def _codenames(self, user: Any, doc: Document) -> frozenset[str]:
        if _same_pk(user, doc.owner_id):
            return OWNER_PERMISSIONS
        # Not a row (another provider's document): no shares.
        roles = self._roles(user, doc) if doc.pk is not None else []
        granted = frozenset().union(*(ROLE_PERMISSIONS.get(role, ()) for role in roles))
        if not roles and _open_documents() and not _is_private(doc):
            granted |= OPEN_PERMISSIONS
        return granted

    def writes_by(self, user: Any, doc: Document) -> str | None:
        """Why a user who is not the owner may change ``doc``: ``"share"`` (a share
        to them or one of their groups), ``"open"`` (``OPEN_DOCUMENTS`` and shared
        with nobody) or ``None``, by the rules of :meth:`_codenames`."""
        if doc.pk is None:
            return None
        roles = self._roles(user, doc)
        if WRITE_ROLES.intersection(roles):
            return "share"
        if not roles and _open_documents() and not _is_private(doc):
            return "open"
        return None

    def _roles(self, user: Any, doc: Document) -> list[str]:
        who = Q(user_id=user.pk)
        if hasattr(user, "groups"):
            who |= Q(group__in=user.groups.all().values("pk"))
        shares = DocumentShare.objects.using(doc._state.db or "default")
        return list(shares.filter(who, document_id=doc.pk).values_list("role", flat=True))
