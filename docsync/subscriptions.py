"""A connection's documents: subscribing, leaving, fan-out, revocation.

``SubscriptionConsumer`` sits between Socket.IO (``docsync.socketio_consumer``)
and the DocSync requests (``docsync.consumers``). It holds who the connection
is (:class:`~docsync.identity.Identity`, set at CONNECT) and the documents it
is subscribed to; it joins and leaves their channel-layer groups and the
state backend's members, sends and receives the messages of
``docsync.groups`` (``dirty``, ``presence``, ``collaboration``, ``revoke``),
and fires the listener events about one document.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async

from . import groups, metrics
from .exceptions import StorageUnavailable
from .grants import Grants
from .identity import Identity
from .listeners import DOCUMENT_EVENTS, SIGNALS, Event, has_receivers
from .providers.orm import ORMProvider
from .socketio_consumer import SocketIOConsumer
from .state import Member, has_collaborators

logger = logging.getLogger(__name__)

#: "Not read yet" for the ``Document`` a request's signals give.
NOT_LOADED: Any = object()


class SubscriptionConsumer(SocketIOConsumer):
    """The documents one connection is subscribed to, and what reaches them."""

    def init_session(self) -> None:
        super().init_session()
        self.identity: Identity | None = None
        self.docs: set[str] = set()
        #: Per document, the clock of the last answer sent: a ``dirty`` up to
        #: it tells this client nothing new.
        self.answered: dict[str, int] = {}
        # What authorize allowed this connection; revocations clear it.
        self.grants = Grants()

    @property
    def connected(self) -> bool:
        return self.identity is not None

    @property
    def user(self) -> Any:
        """The Django user the connection authenticated as (``None`` if unknown)."""
        return self.identity.user if self.identity is not None else None

    def _identity(self) -> Identity:
        """The identity of a connected client (handlers only run once connected)."""
        assert self.identity is not None
        return self.identity

    # -- subscriptions and fan-out ---------------------------------------------

    def _member(self) -> Member:
        identity = self._identity()
        return Member(self.channel_name, identity.user_id, identity.device_id, identity.client_id)

    async def _subscribe(self, doc_id: str, document: Any) -> list[Member]:
        members = await self.server.state.join(doc_id, self._member())
        self.docs.add(doc_id)
        event = self._identity().event(docId=doc_id)
        await self._emit_doc("doc_subscribe", event, document)
        presence = await self.server.state.get_presence(doc_id)
        if presence:
            await self.emit("presence", {"docId": doc_id, "presence": presence})
            metrics.sent("presence")
        await self._collaboration(doc_id, members)
        return members

    async def _unsubscribe(self, doc_id: str, reason: str, ack_id: int | None = None) -> None:
        """Leave ``doc_id`` (answering ``ack_id`` once left), tell the others."""
        remaining = await self._leave(doc_id)
        await self.ack(ack_id, {"success": True})
        await self._collaboration(doc_id, remaining)
        await self._emit_doc("doc_unsubscribe", self._identity().event(docId=doc_id, reason=reason))

    async def _leave(self, doc_id: str) -> list[Member]:
        """Unsubscribe from ``doc_id``; tell the others our presence is gone."""
        client_id = self._identity().client_id
        self.docs.discard(doc_id)
        self.answered.pop(doc_id, None)
        self.grants.forget(doc_id)
        remaining = await self.server.state.leave(doc_id, self._member())
        group = groups.doc_group(doc_id)
        await self.layer_group_discard(group)
        if remaining:
            await self.layer_group_send(group, groups.presence(doc_id, {client_id: None}))
        return remaining

    async def _collaboration(self, doc_id: str, members: list[Member]) -> None:
        has = has_collaborators(members)
        if any(m.channel != self.channel_name for m in members):
            await self.layer_group_send(
                groups.doc_group(doc_id), groups.collaboration(doc_id, has, self.channel_name)
            )
        if doc_id in self.docs:
            await self.emit("collaboration", {"docId": doc_id, "hasCollaborators": has})

    async def _dirty(
        self, doc_id: str, members: list[Member] | None, clock: int | None = None
    ) -> list[Member]:
        """Tell the document's other devices to pull; return the members read.

        ``clock``: the document's clock after this write (``groups.dirty``).
        """
        if members is None:
            members = await self.server.state.members(doc_id)
        device = self._identity().device_id
        # Also when only this device's other tabs are subscribed: they skip
        # it, but their processes learn the clock (docsync.providers.tail).
        if any(m.channel != self.channel_name for m in members):
            message = groups.dirty(doc_id, device, clock)
            await self.layer_group_send_throttled(
                groups.doc_group(doc_id), message, groups.merge_dirty, self.server.dirty_interval
            )
        return members

    async def _emit_doc(self, name: str, event: Event, document: Any = NOT_LOADED) -> None:
        """Emit a document's event; its signal also gets the ``Document`` (ORM provider).

        ``document``: the row already read for this request, if any.
        """
        extra: dict[str, Any] = {"user": self.user}
        if has_receivers(SIGNALS[name]):
            if document is NOT_LOADED:
                document = await self._signal_document(event["docId"])
            extra["document"] = document
        await self.server.emit(name, event, **extra)

    async def _signal_document(self, doc_id: Any) -> Any:
        """The ``Document`` the signals of this request give (read once), or ``None``.

        Read only when a receiver of a document's signal is connected, and
        only with ``ORMProvider``.
        """
        provider = self.server.provider
        if not isinstance(doc_id, str) or not isinstance(provider, ORMProvider):
            return None
        if not any(has_receivers(SIGNALS[name]) for name in DOCUMENT_EVENTS):
            return NOT_LOADED
        from .models import Document

        docs = Document.objects.using(provider.using).defer("snapshot")
        try:
            return await database_sync_to_async(docs.filter(doc_id=doc_id).first)()
        except Exception as exc:  # the database is down: the signal goes without it
            logger.debug("docsync: loading %r for a signal failed: %r", doc_id, exc)
            return None

    # -- channel-layer messages (docsync.groups) -------------------------------------

    async def docsync_dirty(self, message: dict[str, Any]) -> None:
        doc_id = message["doc"]
        clock = message.get("clock")
        # Every process hears the clock, also when no connection of it is told.
        self.server.heard(doc_id, clock)
        if (
            self.identity is not None
            and doc_id in self.docs
            and message["device"] != self.identity.device_id
            # An answer already gave this client the batches up to clock (it
            # pulled after the write): the dirty would only make it pull again.
            and (clock is None or self.answered.get(doc_id, -1) < clock)
        ):
            await self.emit("dirty", {"docId": doc_id})
            metrics.sent("dirty")

    async def docsync_presence(self, message: dict[str, Any]) -> None:
        if message["skip"] != self.channel_name and message["doc"] in self.docs:
            await self.emit("presence", {"docId": message["doc"], "presence": message["presence"]})
            metrics.sent("presence")

    async def docsync_collaboration(self, message: dict[str, Any]) -> None:
        if message["skip"] != self.channel_name and message["doc"] in self.docs:
            await self.emit(
                "collaboration", {"docId": message["doc"], "hasCollaborators": message["has"]}
            )

    async def docsync_revoke(self, message: dict[str, Any]) -> None:
        """Access was taken away (``docsync.revocation``): close, or re-check documents."""
        # Whatever it revokes, what authorize allowed is decided anew.
        self.grants.clear()
        if self.identity is None or self.closing:
            return
        if message.get("close"):
            if self._revocation_applies(message):
                await self._revoked(f"access revoked: {message['close']}")
            return
        if self.docs:
            for doc_id in await self._unreadable(sorted(self.docs)):
                if doc_id in self.docs:
                    await self._unsubscribe(doc_id, "access revoked")

    def _revocation_applies(self, message: dict[str, Any]) -> bool:
        if message.get("auth") is None:
            return True
        context = self._identity().context
        if not isinstance(context, dict) or context.get("auth") != message["auth"]:
            return False
        if message.get("session") is None:
            return True
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return key is None or groups.session_hash(key) == message["session"]

    async def _revoked(self, reason: str) -> None:
        # A Socket.IO DISCONNECT first: the official client does not reconnect after it.
        await self.disconnect_namespace()
        logger.info("docsync: closing %s: %s", self.sid, reason)
        self.request_end(reason)

    async def _unreadable(self, doc_ids: list[str]) -> list[str]:
        try:
            return await self.server.unreadable(doc_ids, self._identity())
        except StorageUnavailable:
            return []  # logged once as an outage; the next request is authorized anyway
        except Exception:
            # Subscriptions stay; the next request is authorized again anyway.
            logger.exception("docsync: re-checking access of %s failed", self.sid)
            return []
