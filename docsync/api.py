"""Documents from the rest of the Django app: views, Celery tasks, ``manage.py shell``.

The Python API the REST API (``docsync.rest``) is built on. Every function
takes the acting ``user`` (a Django user; a ``str`` is a ``userId`` as a
custom ``AUTHENTICATE`` returns it; ``None`` is trusted server code, asked
nothing) and is decided by the server's ``AUTHORIZE``, the same callable and
permission backends as a WebSocket request, so the two never disagree::

        from docsync import api

    with transaction.atomic():
        api.apply_operations(doc_id, [operations], user=request.user)

Writes run through :func:`docsync.sync.sync_document`, in the provider's
transaction, with the document's lock and clocks: a server-side batch is
stored like a client's, and a client that syncs afterwards receives it
exactly like another client's operations. Inside the caller's
``transaction.atomic()`` nothing is visible until it commits (with a
database provider: ``ORMProvider``, ``PostgresProvider``); only then
(``transaction.on_commit``) do the document's connected clients get
``dirty`` through the channel layer (every process of a deployment), does the
document get squashed when its log passed ``SQUASH_THRESHOLD``, and do the
``doc_edit`` listeners and :data:`docsync.signals.doc_edited` run.

Errors are ``docsync.exceptions``: ``PermissionDenied`` (also for a document
that does not exist, as over the socket), ``DocumentDeleted`` for a
tombstone, ``ValidationError`` naming the field.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import Q, QuerySet

from .default import get_default_server
from .exceptions import (
    DocumentDeleted,
    DocumentExists,
    InvalidValue,
    PermissionDenied,
    StorageError,
    ValidationError,
)
from .groups import dirty, doc_group
from .history import HistoryEntry, Restored, after_commit, document_history, restore_document
from .history import state_at as history_state_at
from .identity import Identity
from .listeners import Event
from .providers.base import BaseProvider, DocRecord, Origin
from .requests import parse_sync
from .server import DocSyncServer
from .squash import squash_document
from .state import Member
from .sync import sync_document

logger = logging.getLogger(__name__)

#: The ``deviceId`` server-side batches are stored with (``apply_operations``).
SERVER_DEVICE = "server"

__all__ = [
    "SERVER_DEVICE",
    "Applied",
    "Connected",
    "DocumentState",
    "apply_operations",
    "connected",
    "create_document",
    "delete_document",
    "get_state",
    "history",
    "restore",
    "state_at",
    "visible_documents",
]


@dataclass(frozen=True)
class DocumentState:
    """A document as a client would hold it after a full sync.

    ``state`` is the snapshot with every pending batch folded in by the
    document's binding (the snapshot as stored when it has no binding);
    ``clock`` is the latest clock, ``snapshot_clock`` the one folded into the
    stored snapshot.
    """

    doc_id: str
    doc_type: str
    clock: int
    snapshot_clock: int
    owner_id: str | None
    state: Any
    folded: bool  # whether pending batches were folded into ``state``


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_operations` stored: the batch's clock."""

    doc_id: str
    doc_type: str
    clock: int


@dataclass(frozen=True)
class Connected:
    """Who is subscribed to a document right now, and their presence (all processes)."""

    doc_id: str
    members: list[Member]
    presence: dict[str, Any]


# -- identity and authorization -------------------------------------------------


def identity_of(user: Any) -> Identity | None:
    """The identity a connection of ``user`` would have (``None``: trusted code)."""
    if user is None:
        return None
    if isinstance(user, str):
        return Identity(user_id=user, device_id=SERVER_DEVICE)
    if not getattr(user, "is_authenticated", False):
        raise PermissionDenied()
    context = {"user_pk": user.pk, "auth": "api"}
    return Identity(user_id=str(user.pk), device_id=SERVER_DEVICE, context=context, user=user)


def authorize(server: DocSyncServer, kind: str, req: dict[str, Any], user: Any) -> Event | None:
    """Ask the server's ``AUTHORIZE`` about ``req``, exactly as for a connection of ``user``;
    raise ``PermissionDenied`` if refused.

    Returns the authorize event (``None`` for trusted code: nothing asked).
    """
    identity = identity_of(user)
    if identity is None:
        return None
    is_async = inspect.iscoroutinefunction(server.authorize) or inspect.iscoroutinefunction(
        getattr(server.authorize, "__call__", None)  # noqa: B004
    )
    # The server's own event: the same fields (and Document) a socket request gets.
    event = server._authorize_event(kind, req, identity, load=not is_async)
    allowed = server.authorize(event)
    if inspect.isawaitable(allowed):
        allowed = async_to_sync(_await)(allowed)
    if not allowed:
        raise PermissionDenied()
    return event


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _pull(doc_id: str, doc_type: str | None = None) -> dict[str, Any]:
    return {"type": doc_type, "docId": doc_id, "operations": [], "serializedDoc": None, "clock": 0}


def may(user: Any, action: str, doc_id: str, *, server: DocSyncServer | None = None) -> bool:
    """Whether ``user`` may ``"read"``, ``"write"`` or ``"delete"`` ``doc_id``."""
    server = server or get_default_server()
    kind, req = "sync", _pull(doc_id)
    if action == "write":
        req["operations"] = [None]
    elif action == "delete":
        kind, req = "delete-doc", {"docId": doc_id}
    try:
        authorize(server, kind, req, user)
    except PermissionDenied:
        return False
    return True


# -- reading ----------------------------------------------------------------------


def get_state(
    doc_id: str, *, user: Any, server: DocSyncServer | None = None, fold: bool = True
) -> DocumentState:
    """Read ``doc_id`` as ``user`` may: snapshot plus pending batches, folded; writes nothing.

    Raises ``PermissionDenied`` when the user may not read it or it does not
    exist, ``DocumentDeleted`` for a tombstone. With ``fold=False`` the
    stored snapshot is returned as it is.
    """
    server = server or get_default_server()
    authorize(server, "sync", _pull(doc_id), user)
    with server.provider.transaction("readonly", doc_id) as tx:
        record = tx.get_serialized_doc()
        if record is None:
            raise PermissionDenied()
        if record.deleted:
            raise DocumentDeleted(doc_id)
        batches = tx.get_operations(record.clock) if fold and record.pending > 0 else []
    state, folded = record.serialized_doc, False
    binding = server.bindings.get(record.doc_type)
    if batches and binding is not None:
        operations = [value for batch in batches for value in batch.operations]
        state = binding.squash(state, operations, doc_type=record.doc_type, doc_id=doc_id)
        folded = True
    return _state_of(record, state, folded)


def _state_of(record: DocRecord, state: Any, folded: bool) -> DocumentState:
    owner = None if record.owner_id is None else str(record.owner_id)
    return DocumentState(
        record.doc_id, record.doc_type, record.latest_clock, record.clock, owner, state, folded
    )


def visible_documents(user: Any, *, server: DocSyncServer | None = None) -> QuerySet[Any]:
    """The ``Document`` rows (not deleted) that ``user`` may read, as a queryset.

    With the default ``AUTHORIZE`` and the permission backends docsync knows
    (``ModelBackend``, ``DocumentPermissionBackend``) this is one query that
    decides as they do; with any other ``AUTHORIZE`` or backend each
    document is put to ``AUTHORIZE`` (exact, slower). Needs ``ORMProvider``
    (or a subclass): other providers keep no ``Document`` rows.
    """
    from .models import Document

    server = server or get_default_server()
    using = _orm_database(server.provider)
    documents = Document.objects.using(using).filter(deleted_at__isnull=True)
    if user is None:
        return documents
    if isinstance(user, str):
        return _asked(documents, user, server)
    if not getattr(user, "is_active", False):
        return documents.none()
    rule = _known_rule(server, user)
    if rule is None:
        return _asked(documents, user, server)
    if isinstance(rule, bool):
        return documents if rule else documents.none()
    return documents.filter(rule)


def _orm_database(provider: BaseProvider) -> str:
    from .providers.orm import ORMProvider

    if not isinstance(provider, ORMProvider):
        raise ValidationError(
            f"Listing documents needs ORMProvider (or a subclass); the server's provider is "
            f"{type(provider).__name__}, which keeps no Document rows."
        )
    return str(provider.using)


def _known_rule(server: DocSyncServer, user: Any) -> Q | bool | None:
    """The filter the default authorize and backends amount to (None: unknown)."""
    from django.contrib.auth import get_backends
    from django.contrib.auth.backends import ModelBackend

    from .backends import DocumentPermissionBackend, _open_documents
    from .permissions import DocumentPermissions

    authorize = server.authorize
    if type(authorize) is not DocumentPermissions:
        return None
    if user.is_superuser:
        return True  # has_perm answers True to an active superuser, whatever the backends
    backends = get_backends()
    if not all(type(b) in (ModelBackend, DocumentPermissionBackend) for b in backends):
        return None
    if not any(type(b) is DocumentPermissionBackend for b in backends):
        return False
    rule = Q(owner_id=user.pk) | Q(shares__user_id=user.pk)
    rule |= Q(shares__group__in=user.groups.all().values("pk"))
    if _open_documents():
        rule |= Q(private=False, shares__isnull=True)
    return Q(pk__in=_subquery(rule))


def _subquery(rule: Q) -> Any:
    from .models import Document

    return Document.objects.filter(rule).values("pk")


def _asked(documents: QuerySet[Any], user: Any, server: DocSyncServer) -> QuerySet[Any]:
    allowed = [
        pk
        for pk, doc_id in documents.values_list("pk", "doc_id").iterator()
        if may(user, "read", doc_id, server=server)
    ]
    return documents.filter(pk__in=allowed)


def connected(doc_id: str, *, user: Any, server: DocSyncServer | None = None) -> Connected:
    """Who is subscribed to ``doc_id`` now, on every process, and their presence.

    Needs read access, like a client's ``presence``.
    """
    server = server or get_default_server()
    authorize(server, "sync", _pull(doc_id), user)
    return async_to_sync(_connected)(server, doc_id)


async def _connected(server: DocSyncServer, doc_id: str) -> Connected:
    members = await server.state.members(doc_id)
    presence = await server.state.get_presence(doc_id)
    return Connected(doc_id, members, presence)


# -- history (docsync.history) ----------------------------------------------------


def history(
    doc_id: str,
    *,
    user: Any,
    before_clock: int | None = None,
    limit: int = 50,
    server: DocSyncServer | None = None,
) -> list[HistoryEntry]:
    """The newest ``limit`` entries of ``doc_id``'s timeline below ``before_clock``.

    Newest first (who, device, client, when, how many operations); page on
    with ``before_clock`` set to the last entry's clock. Needs read access.
    """
    server = server or get_default_server()
    authorize(server, "sync", _pull(doc_id), user)
    return document_history(server.provider, doc_id, before_clock=before_clock, limit=limit)


def state_at(doc_id: str, clock: int, *, user: Any, server: DocSyncServer | None = None) -> Any:
    """The document's state at ``clock``, rebuilt from its history (read access).

    Raises ``InvalidValue`` for a clock it never had, ``HistoryUnavailable``
    when that part of the history is not kept.
    """
    server = server or get_default_server()
    authorize(server, "sync", _pull(doc_id), user)
    return history_state_at(server.provider, server.bindings, doc_id, clock)


def restore(doc_id: str, clock: int, *, user: Any, server: DocSyncServer | None = None) -> Restored:
    """Restore ``doc_id`` to its state at ``clock`` as a new change by ``user``.

    A write (the change permission, as a client's operations); every
    connected client receives the restored state on its next sync, after
    the commit (see ``docsync.history.restore_document``).
    """
    server = server or get_default_server()
    authorize(server, "sync", {**_pull(doc_id), "operations": [None]}, user)
    identity = identity_of(user)
    origin = Origin(identity.user_id if identity else None, SERVER_DEVICE, "")
    return restore_document(
        server.provider, server.bindings, doc_id, clock, _user_object(user), origin=origin
    )


# -- writing ----------------------------------------------------------------------


def apply_operations(
    doc_id: str,
    operations: list[Any],
    *,
    user: Any,
    doc_type: str | None = None,
    device_id: str = SERVER_DEVICE,
    client_id: str = "",
    server: DocSyncServer | None = None,
) -> Applied:
    """Store ``operations`` (a list of operations values, as a client's sync sends them)
    as one batch by ``user``; return its clock.

    ``doc_type`` is needed to create a document, and must match an existing
    one's. Authorization, validation (the binding's ``validate_operations``,
    ``MAX_JSON_DEPTH``), the lock and the clock are those of a client's sync;
    the batch is kept with ``device_id`` and ``client_id`` (no resend
    detection without a ``client_id``). See the module docstring for what
    happens on commit.
    """
    server = server or get_default_server()
    if not isinstance(operations, list) or not operations:
        raise ValidationError("operations must be a non-empty list of operations values.")
    event = authorize(server, "sync", {**_pull(doc_id), "operations": operations}, user)
    if doc_type is None:
        doc_type = _existing_type(server, doc_id, event)
    req = parse_sync({**_pull(doc_id, doc_type), "operations": operations}, server.max_json_depth)
    identity = identity_of(user)
    origin = Origin(identity.user_id if identity else None, device_id, client_id)
    expect_new = event is not None and "document" in event and event["document"] is None
    try:
        outcome = sync_document(
            server.provider,
            req,
            origin,
            server.bindings,
            expect_new=expect_new,
            max_depth=server.max_json_depth,
        )
    except StorageError:
        if not expect_new:
            raise
        # Created by someone else meanwhile: decided again, on the document now there.
        return apply_operations(
            doc_id, operations, user=user, doc_type=doc_type, device_id=device_id,
            client_id=client_id, server=server,
        )  # fmt: skip
    _on_commit(server, _edited, server, doc_id, outcome.clock, outcome.pending, origin, user, req)
    return Applied(doc_id, doc_type, outcome.clock)


def _existing_type(server: DocSyncServer, doc_id: str, event: Event | None) -> str:
    document = event.get("document") if event is not None else None
    doc_type = getattr(document, "doc_type", None)
    if document is not None and doc_type is not None:
        return str(doc_type)
    with server.provider.transaction("readonly", doc_id) as tx:
        record = tx.get_serialized_doc(with_snapshot=False)
    if record is None:
        raise InvalidValue(("type",), f"is required to create document {doc_id!r}")
    return record.doc_type


def create_document(
    doc_id: str,
    doc_type: str,
    *,
    user: Any,
    snapshot: Any = None,
    operations: list[Any] | None = None,
    server: DocSyncServer | None = None,
) -> Applied:
    """Create ``doc_id`` as a client's first sync would, owned by ``user``.

    Its first snapshot is ``snapshot``, or the binding's empty document of
    ``doc_type``; ``operations`` (optional) follow as the first batch.
    Raises ``DocumentExists`` when it exists already (and the user may read
    it; ``PermissionDenied`` otherwise), ``ValidationError`` when there is no
    snapshot to start from (no binding and none given).
    """
    server = server or get_default_server()
    if snapshot is None:
        binding = server.bindings.get(doc_type)
        if binding is None:
            raise InvalidValue(("snapshot",), f"is required: no binding serves {doc_type!r}")
        try:
            snapshot = binding.serialize(binding.create(doc_type, doc_id))
        except ValueError as exc:
            raise InvalidValue(("id",), f"is refused by the {doc_type!r} binding: {exc}") from None
    wire = {**_pull(doc_id, doc_type), "operations": operations or [], "serializedDoc": snapshot}
    req = parse_sync(wire, server.max_json_depth)
    event = authorize(server, "sync", req.as_wire(), user)
    if event is not None and event.get("document") is not None:
        raise DocumentExists(doc_id)
    identity = identity_of(user)
    origin = Origin(identity.user_id if identity else None, SERVER_DEVICE, "")
    try:
        outcome = sync_document(
            server.provider,
            req,
            origin,
            server.bindings,
            expect_new=True,
            max_depth=server.max_json_depth,
        )
    except StorageError:
        raise DocumentExists(doc_id) from None  # created meanwhile
    except DocumentDeleted:
        raise DocumentExists(doc_id) from None
    if req.operations:
        _on_commit(
            server, _edited, server, doc_id, outcome.clock, outcome.pending, origin, user, req
        )
    return Applied(doc_id, doc_type, outcome.clock)


def delete_document(doc_id: str, *, user: Any, server: DocSyncServer | None = None) -> bool:
    """Delete ``doc_id`` as ``delete-doc`` does: a tombstone, so no stale client revives it.

    Returns ``False`` when there was nothing to delete (missing or deleted
    already). The ``doc_delete`` listeners and signal run on commit.
    """
    server = server or get_default_server()
    authorize(server, "delete-doc", {"docId": doc_id}, user)
    with server.provider.transaction("readwrite", doc_id) as tx:
        deleted = tx.delete_doc()
    if deleted:
        _on_commit(server, _deleted, server, doc_id, user)
    return deleted


# -- after commit -------------------------------------------------------------------


def _on_commit(server: DocSyncServer, func: Any, *args: Any) -> None:
    after_commit(server.provider, lambda: func(*args))


def _edited(
    server: DocSyncServer,
    doc_id: str,
    clock: int,
    pending: int,
    origin: Origin,
    user: Any,
    req: Any,
) -> None:
    """Committed: tell the clients, squash if due, run the listeners (never raises)."""
    event = Event(
        userId=origin.user_id,
        deviceId=origin.device_id,
        clientId=origin.client_id,
        docId=doc_id,
        clock=clock,
        operations=req.operations,
    )
    try:
        async_to_sync(_announce)(server, doc_id, event, _user_object(user))
    except Exception:  # noqa: BLE001  (the edit is committed; a lost dirty is a hint)
        logger.exception(
            "docsync: telling the clients of %r about a server-side edit failed", doc_id
        )
    if server.squash_threshold and pending >= server.squash_threshold:
        try:
            squash_document(server.provider, server.bindings, doc_id)
        except Exception as exc:  # noqa: BLE001  (the log is kept, as after a client's sync)
            logger.warning("docsync: squashing %r failed, the log is kept: %s", doc_id, exc)


async def _announce(server: DocSyncServer, doc_id: str, event: Event, user: Any) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        # deviceId "" is no client's (the handshake refuses it): every subscriber hears it.
        await layer.group_send(doc_group(doc_id), dirty(doc_id))
    await _emit(server, "doc_edit", event, user)


def _deleted(server: DocSyncServer, doc_id: str, user: Any) -> None:
    identity = identity_of(user)
    event = Event(
        userId=identity.user_id if identity else None,
        deviceId=SERVER_DEVICE,
        clientId="",
        docId=doc_id,
    )
    try:
        async_to_sync(_emit)(server, "doc_delete", event, _user_object(user))
    except Exception:  # noqa: BLE001
        logger.exception("docsync: doc_delete listeners of %r failed", doc_id)


async def _emit(server: DocSyncServer, name: str, event: Event, user: Any) -> None:
    """Run the listeners and the signal of ``name``, as the consumer does."""
    if not server.wants(name):
        return
    from channels.db import database_sync_to_async

    from .permissions import load_document
    from .providers.orm import ORMProvider

    document = None
    if isinstance(server.provider, ORMProvider):
        document = await database_sync_to_async(load_document)(server.provider, event["docId"])
    await server.emit(name, event, user=user, document=document)


def _user_object(user: Any) -> Any:
    return None if user is None or isinstance(user, str) else user
