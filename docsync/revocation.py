"""Live revocation: open connections learn at once that access was taken away.

Each connection joins its user's channel-layer group (:func:`user_group`).
When a share is removed, downgraded or moved, a document changes owner, the
user's groups change, the user loses superuser status, is deactivated or
deleted, or a session logs out, a ``docsync.revoke`` message goes to that
group after the transaction commits, through the channel layer, so it reaches
every server process:

* ``{"recheck": True}``: each connection asks ``authorize`` again, in one
  database hop, whether it may still read each document it is subscribed to,
  and unsubscribes from those it may not (no more ``dirty`` or ``presence``;
  its next request is refused by ``authorize`` anyway).
* ``{"close": reason}``: connections close with ``access revoked: <reason>``;
  with ``"auth": "session"`` only session-authenticated ones (and with
  ``"session"``, only those of that session).

Bulk changes (``QuerySet.update()``, raw SQL) send no model signals: their
writer calls :func:`recheck_user` (a downgrade needs nothing: the next write
is refused anyway). A project whose permissions change elsewhere (django-guardian, django-rules,
its own models) calls :func:`recheck_user` for the users concerned.
Sending never fails the save that caused it: a channel layer that is down is
logged, and the revoked user's next request is refused anyway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model, user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

from . import groups

if TYPE_CHECKING:
    from .models import Document, DocumentShare

logger = logging.getLogger(__name__)

#: Kept importable here: the group and hash that revocation messages use.
user_group = groups.user_group
session_hash = groups.session_hash


def revoke_message(**fields: Any) -> dict[str, Any]:
    """A ``docsync.revoke`` message (see :func:`docsync.groups.revoke`)."""
    return groups.revoke(**fields)


def send_now(user_pks: Any, message: dict[str, Any]) -> None:
    """Send ``message`` to the connections of ``user_pks``; log, never raise."""
    layer = get_channel_layer()
    if layer is None:
        return
    for pk in set(user_pks):
        try:
            _group_send(layer, user_group(pk), message)
        except Exception as exc:  # noqa: BLE001  (a revocation never fails the save)
            logger.error(
                "docsync: could not notify the connections of user %s (%s: %s); they "
                "keep their subscriptions until their next request is refused.",
                pk,
                exc.__class__.__name__,
                exc,
            )


def _group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(group, message)
        return
    # Called from code running on an event loop (no async_to_sync there).
    task = asyncio.get_running_loop().create_task(layer.group_send(group, message))
    task.add_done_callback(_log_task_failure)


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("docsync: revocation message failed: %s", task.exception())


def notify(user_pks: Any, message: dict[str, Any], using: str | None = None) -> None:
    """Send ``message`` to the users' connections once the transaction commits."""
    pks = {pk for pk in user_pks if pk is not None}
    if pks:
        transaction.on_commit(lambda: send_now(pks, message), using=using)


def recheck_user(user: Any, using: str | None = None) -> None:
    """Make the user's connections check their documents again (after commit)."""
    notify([getattr(user, "pk", user)], revoke_message(recheck=True), using=using)


def close_user(user: Any, reason: str, using: str | None = None, **fields: Any) -> None:
    """Close the user's connections with ``access revoked: <reason>`` (after commit)."""
    notify([getattr(user, "pk", user)], revoke_message(close=reason, **fields), using=using)


# -- who is affected -------------------------------------------------------------


def _share_users(user_id: Any, group_id: Any, using: str | None) -> set[Any]:
    if user_id is not None:
        return {user_id}
    if group_id is None:
        return set()
    users = get_user_model()._default_manager.db_manager(using)
    return set(users.filter(groups__pk=group_id).values_list("pk", flat=True))


# -- receivers ----------------------------------------------------------------------


def share_saved(
    sender: Any, instance: DocumentShare, created: bool, using: str | None = None, **kwargs: Any
) -> None:
    current: tuple[Any, Any] = (instance.user_id, instance.group_id)
    before: tuple[Any, Any] = getattr(instance, "_loaded", current)
    setattr(instance, "_loaded", current)  # noqa: B010  (not a field of the model)
    if created:
        _make_private(instance.document_id, using)
        return  # otherwise a new share takes nothing away
    users = _share_users(*before, using) | _share_users(*current, using)
    recheck_users(users, using)


def share_pre_delete(
    sender: Any, instance: DocumentShare, using: str | None = None, **kwargs: Any
) -> None:
    # Before the delete: afterwards a cascade may have emptied the group.
    users = _share_users(instance.user_id, instance.group_id, using)
    setattr(instance, "_revoke_users", users)  # noqa: B010  (not a field of the model)


def share_deleted(
    sender: Any, instance: DocumentShare, using: str | None = None, **kwargs: Any
) -> None:
    users = getattr(instance, "_revoke_users", None)
    if users is None:
        users = _share_users(instance.user_id, instance.group_id, using)
    recheck_users(users, using)


def document_saved(
    sender: Any, instance: Document, created: bool, using: str | None = None, **kwargs: Any
) -> None:
    update_fields = kwargs.get("update_fields")
    if not created and update_fields is not None and "private" in update_fields:
        recheck_document(instance.doc_id, using)
    if created or (update_fields is not None and "owner" not in update_fields):
        return  # syncs save documents all the time, never their owner
    before = getattr(instance, "_loaded_owner_id", None)
    setattr(instance, "_loaded_owner_id", instance.owner_id)  # noqa: B010  (not a field)
    if before is not None and before != instance.owner_id:
        recheck_users([before], using)


def _make_private(document_pk: Any, using: str | None) -> None:
    """A document's first share makes it private: its subscribers check again."""
    from .models import Document

    documents = Document.objects.using(using or "default")
    if documents.filter(pk=document_pk, private=False).update(private=True):
        doc_id = documents.filter(pk=document_pk).values_list("doc_id", flat=True).first()
        recheck_document(doc_id, using)


def recheck_document(doc_id: str | None, using: str | None = None) -> None:
    """Make every connection subscribed to ``doc_id`` check its documents again."""
    if doc_id is None:
        return

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            _group_send(layer, groups.doc_group(doc_id), groups.revoke(recheck=True))
        except Exception as exc:  # noqa: BLE001  (never fail the save)
            logger.error("docsync: could not notify the subscribers of %r: %s", doc_id, exc)

    transaction.on_commit(send, using=using)


def recheck_users(users: Any, using: str | None) -> None:
    notify(users, revoke_message(recheck=True), using=using)


def groups_changed(
    sender: Any,
    instance: Any,
    action: str,
    reverse: bool,
    pk_set: set[Any] | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    """Group membership changed (``user.groups`` or ``group.user_set``)."""
    if action == "pre_clear" and reverse:
        instance._revoke_users = set(instance.user_set.values_list("pk", flat=True))
        return
    if action not in ("post_remove", "post_clear"):
        return
    users: set[Any]
    if not reverse:
        users = {instance.pk}
    elif action == "post_clear":
        users = getattr(instance, "_revoke_users", set())
    else:
        users = set(pk_set or ())
    recheck_users(users, using)


def user_saved(
    sender: Any, instance: Any, created: bool, using: str | None = None, **kwargs: Any
) -> None:
    if created:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not {"is_active", "is_superuser"} & set(update_fields):
        return  # e.g. last_login on every login
    if not getattr(instance, "is_active", True):
        close_user(instance, "user deactivated", using=using)
    elif not getattr(instance, "is_superuser", False):
        recheck_users([instance.pk], using)  # it may have lost superuser status


def user_deleted(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    close_user(instance, "user deleted", using=using)


def logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    fields: dict[str, Any] = {"auth": "session"}
    if key:
        fields["session"] = session_hash(key)
    # A logout is not in a transaction of ours: on_commit runs at once then.
    close_user(user, "logged out", **fields)


def connect_receivers() -> None:
    """Connect the receivers (``DocSyncConfig.ready``)."""
    from .models import Document, DocumentShare

    uid = "docsync.revocation"
    post_save.connect(share_saved, sender=DocumentShare, dispatch_uid=f"{uid}.share_saved")
    pre_delete.connect(share_pre_delete, sender=DocumentShare, dispatch_uid=f"{uid}.share_pre")
    post_delete.connect(share_deleted, sender=DocumentShare, dispatch_uid=f"{uid}.share_deleted")
    post_save.connect(document_saved, sender=Document, dispatch_uid=f"{uid}.document_saved")
    user_model = get_user_model()
    post_save.connect(user_saved, sender=user_model, dispatch_uid=f"{uid}.user_saved")
    post_delete.connect(user_deleted, sender=user_model, dispatch_uid=f"{uid}.user_deleted")
    groups = getattr(user_model, "groups", None)
    if groups is not None and hasattr(groups, "through"):
        m2m_changed.connect(groups_changed, sender=groups.through, dispatch_uid=f"{uid}.groups")
    user_logged_out.connect(logged_out, dispatch_uid=f"{uid}.logged_out")
