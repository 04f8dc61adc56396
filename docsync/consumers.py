"""The Channels consumer: Socket.IO handshake, events and fan-out.

One consumer per WebSocket. It frames and unframes packets
(``docsync.protocol``), checks the handshake (PROTOCOL §3), validates
payloads (``docsync.events``), and leaves policy and storage to the
``DocSyncServer`` it serves. Requests of one connection are handled one at a
time, in arrival order; requests for one document never interleave.

The Engine.IO transport under it is ``docsync.transport.EngineIOConsumer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from channels.db import database_sync_to_async

from . import logs
from . import protocol as p
from .events import parse_doc_request, parse_presence, parse_sync
from .exceptions import (
    DocsyncError,
    InvalidValue,
    PermissionDenied,
    ProtocolError,
    StorageUnavailable,
    ValidationError,
)
from .groups import dirty_message, doc_group
from .handshake import handshake
from .providers.base import Origin
from .revocation import session_hash, user_group
from .server import _SIGNALS, DocSyncServer, Event, Grants
from .state import Member, has_collaborators
from .throttle import Backoff
from .transport import EngineIOConsumer, new_sid

logger = logging.getLogger(__name__)

_ACK_ID = re.compile(r"^[25](?:\d+-)?(?:/[^,]*,)?(\d+)")


class DocSyncConsumer(EngineIOConsumer):
    """Serves one DocSync client over Socket.IO (Engine.IO v4, WebSocket only)."""

    def init_session(self) -> None:
        self.identity: Event | None = None
        self.user: Any = None
        self.user_group: str | None = None
        self.docs: set[str] = set()
        self.pending: p.Packet | None = None
        self.pending_bytes = 0
        # What authorize allowed this connection; revocations clear it.
        self.grants = Grants()
        # Drops the transport when the connection's token expires.
        self.expiry: asyncio.TimerHandle | None = None
        # For the connection's end line (docsync.logs).
        self.opened = time.monotonic()
        self.refused: str | None = None
        from .conf import docsync_settings as s

        self.backoff = Backoff(s.REFUSAL_BACKOFF, s.REFUSAL_BACKOFF_MAX)
        self.held_answers: set[asyncio.Task] = set()

    @property
    def connected(self) -> bool:
        return self.identity is not None

    async def on_message(self, text: str) -> None:
        await self._on_packet(text)

    async def on_binary(self, data: bytes) -> None:
        await self._on_attachment(data)

    async def on_end(self, reason: str) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        identity, doc_ids = self.identity, sorted(self.docs)
        try:
            await self._leave_namespace(reason)
        finally:
            logs.connection_ended(
                self._sid_or_new(),
                identity["userId"] if identity is not None else None,
                doc_ids,
                reason,
                time.monotonic() - self.opened,
                self.refused,
            )

    async def emit(self, name: str, data: Any) -> None:
        """Send the event ``name`` to this client."""
        await self._send_frames(p.encode_event(name, data))

    # -- Socket.IO -----------------------------------------------------------

    async def _on_packet(self, text: str) -> None:
        try:
            packet = p.decode_packet(text, self.srv.max_json_depth)
        except (ProtocolError, ValidationError) as exc:
            await self._malformed(text, exc)
            return
        if self.pending is not None:
            logger.info("docsync: incomplete binary packet from %s dropped", self.sid)
            self.pending = None
        if packet.attachment_count:
            self.pending = packet
            self.pending_bytes = 0
            return
        await self._handle(packet)

    async def _on_attachment(self, data: bytes) -> None:
        packet = self.pending
        if packet is None:
            logger.info("docsync: unexpected binary frame from %s dropped", self.sid)
            return
        self.pending_bytes += len(data)
        if self.pending_bytes > self.srv.max_payload:
            # maxPayload bounds a whole packet, not each of its frames.
            await self.shutdown("transport close", code=1009)
            return
        try:
            complete = packet.add_attachment(data)
        except ProtocolError as exc:
            self.pending = None
            logger.info("docsync: malformed binary packet from %s dropped: %s", self.sid, exc)
            if packet.id is not None and self.identity is not None:
                await self._answer_error(packet.id, exc)
            return
        if complete:
            self.pending = None
            await self._handle(packet)

    async def _malformed(self, text: str, exc: ProtocolError | ValidationError) -> None:
        logger.info("docsync: malformed packet from %s dropped: %s", getattr(self, "sid", "?"), exc)
        if text[:1] == "0" and self.identity is None and isinstance(exc, InvalidValue):
            # A CONNECT whose auth holds a refused value: refuse it as clearly.
            await self._refuse_connect(None, f"Invalid handshake: {exc.message}")
            return
        match = _ACK_ID.match(text)
        if match and self.identity is not None:
            await self._answer_error(int(match.group(1)), exc)

    async def _handle(self, packet: p.Packet) -> None:
        kind = packet.packet_type
        if packet.namespace not in (None, "/"):
            if kind == p.CONNECT:
                await self.send(p.encode_connect_error("Invalid namespace", packet.namespace))
            return
        if kind == p.CONNECT:
            await self._on_connect(packet.data)
        elif kind == p.DISCONNECT:
            await self._leave_namespace("client namespace disconnect")
        elif kind in (p.EVENT, p.BINARY_EVENT):
            await self._on_event(packet)
        else:
            logger.debug("docsync: ignored Socket.IO packet type %s", kind)

    async def _on_connect(self, auth: Any) -> None:
        if self.identity is not None:
            await self.shutdown("transport close")
            return
        address = _client_address(self.scope)
        failures = self.srv.login_failures
        try:
            # An address that keeps failing waits its turn (one at a time).
            async with failures.turn(address):
                try:
                    identity = await handshake(self.srv, self.scope, auth)
                except StorageUnavailable:
                    raise  # not the client's failure
                except DocsyncError:
                    failures.failed(address)
                    raise
                self.srv.add_user_connection(identity["userId"])
        except StorageUnavailable as exc:
            # Closing the transport (not CONNECT_ERROR, after which the official
            # client gives up) makes clients reconnect until storage is back.
            self.refused = exc.message
            await self.srv.emit("client_disconnect", _refused_event(auth, exc.message))
            self.request_end(exc.message, code=1013)
            return
        except DocsyncError as exc:
            await self._refuse_connect(auth, exc.message)
            return
        self.user = identity.pop("user", None)
        self.identity = identity
        self.connect_deadline.cancel()
        self._expire_at(identity.get("expiresAt"))
        # Before answering, so that no revocation can slip in between.
        self.user_group = _user_group_of(identity)
        if self.user_group is not None:
            await self.layer_group_add(self.user_group)
        await self.send(p.encode_connect(new_sid()))
        await self.emit("identity", {"userId": identity["userId"]})
        await self.srv.emit(
            "client_connect", self._event(context=identity.get("context")), user=self.user
        )

    def _expire_at(self, expires_at: float | None) -> None:
        """Drop the transport at ``expires_at`` (Unix seconds), when the token expires."""
        if expires_at is None:
            return
        delay = max(0.0, expires_at - time.time())
        self.expiry = asyncio.get_running_loop().call_later(delay, self._token_expired)

    def _token_expired(self) -> None:
        if self.identity is None or self.closing:
            return
        # No Socket.IO DISCONNECT: after a dropped transport the official
        # client reconnects, asking its auth callback for a new token.
        logger.info("docsync: closing %s: token expired", self.sid)
        self.request_end("token expired")

    async def _refuse_connect(self, auth: Any, message: str) -> None:
        self.refused = message
        await self.send(p.encode_connect_error(message))
        await self.srv.emit("client_disconnect", _refused_event(auth, message))

    async def _leave_namespace(self, reason: str) -> None:
        if self.identity is None:
            return
        for doc_id in list(self.docs):
            try:
                remaining = await self._leave(doc_id)
                await self._collaboration(doc_id, remaining)
                await self._emit_doc("doc_unsubscribe", self._event(docId=doc_id, reason=reason))
            except Exception:  # the other documents are still left
                logger.exception("docsync: leaving %r on %s failed", doc_id, reason)
        event = self._event(reason=reason)
        self.srv.remove_user_connection(self.identity["userId"])
        self.identity = None
        for task in self.held_answers:
            task.cancel()
        if self.user_group is not None:
            await self.layer_group_discard(self.user_group)
        await self.srv.emit("client_disconnect", event, user=self.user)

    async def _emit_doc(self, name: str, event: Event) -> None:
        """Emit a document's event; its signal also gets the ``Document`` (ORM provider)."""
        extra: dict[str, Any] = {"user": self.user}
        if _SIGNALS[name].has_listeners():
            extra["document"] = await _load_document(self.srv, event["docId"])
        await self.srv.emit(name, event, **extra)

    def _event(self, **fields: Any) -> Event:
        ident = self.identity
        return Event(
            userId=ident["userId"], deviceId=ident["deviceId"], clientId=ident["clientId"], **fields
        )

    # -- events ---------------------------------------------------------------

    async def _on_event(self, packet: p.Packet) -> None:
        if self.identity is None:
            logger.debug("docsync: event before CONNECT dropped")
            return
        try:
            event = p.parse_event(packet)
        except ProtocolError as exc:
            self._request_failed("", None, exc)
            if packet.id is not None:
                await self._answer_error(packet.id, exc)
            return
        handler = self._handlers.get(event.name)
        arg = event.arg
        doc_id = arg.get("docId") if isinstance(arg, dict) else None
        doc_id = doc_id if isinstance(doc_id, str) else None
        try:
            if handler is None:
                raise ValidationError(f"Unknown event: {event.name}")
            await handler(self, arg, event.ack_id)
        except DocsyncError as exc:
            self._request_failed(event.name, event.arg, exc)
            error: DocsyncError | None = exc
        except Exception as exc:
            logger.exception("docsync: %s failed", event.name)
            self._request_failed(event.name, event.arg, exc)
            error = None  # answered as an internal error, never with its text
        else:
            if doc_id is not None:
                self.backoff.succeeded(doc_id)
            return
        if event.ack_id is not None:
            await self._refuse(event.ack_id, error, event.name, doc_id)

    async def _refuse(
        self, ack_id: int, exc: DocsyncError | None, name: str, doc_id: str | None
    ) -> None:
        """Answer a refusal; the same one again and again waits longer each time.

        The answer is held back in a task of its own, so that the connection's
        other requests (other documents) are served meanwhile. Storage outages
        are not backed off (``ERROR_*`` still limits a storm of them).
        """
        if isinstance(exc, StorageUnavailable):
            delay = 0.0  # an outage is not the client's doing: the first retry after it succeeds
        else:
            key = (doc_id, name, type(exc).__name__, exc.message if exc is not None else None)
            delay = self.backoff.refused(key)
        if delay <= 0:
            await self._answer_error(ack_id, exc, name)
            return

        async def answer_later() -> None:
            await asyncio.sleep(delay)
            await self._answer_error(ack_id, exc, name)

        task = asyncio.get_running_loop().create_task(answer_later())
        self.held_answers.add(task)
        task.add_done_callback(self.held_answers.discard)

    def _request_failed(self, name: str, arg: Any, exc: Exception) -> None:
        """The request's line in ``docsync.requests`` (what the client was told).

        Not for an outage: ``docsync.outage`` logs it once each way.
        """
        if isinstance(exc, StorageUnavailable):
            return
        logs.request_failed(
            self.sid,
            self.identity["userId"] if self.identity is not None else None,
            name,
            arg.get("docId") if isinstance(arg, dict) else None,
            exc.wire_type if isinstance(exc, DocsyncError) else "DatabaseError",
            exc.message if isinstance(exc, DocsyncError) else "Internal server error",
        )

    async def _ack(self, ack_id: int | None, response: Any) -> None:
        if ack_id is not None:
            await self._send_frames(p.encode_ack(ack_id, response))

    async def _answer_error(self, ack_id: int, exc: Exception | None, name: str = "") -> None:
        await self._throttle()
        if isinstance(exc, DocsyncError):
            error = {"type": exc.wire_type, "message": exc.message}
        else:
            error = {"type": "DatabaseError", "message": "Internal server error"}
        body: dict[str, Any] = {"error": error}
        if name in ("delete-doc", "unsubscribe-doc"):
            body = {"success": False, "error": error}
        await self._send_frames(p.encode_ack(ack_id, body))

    async def _throttle(self) -> None:
        """Slow down a user whose requests keep failing, over all its
        connections (the official client retries at once, forever)."""
        user = self.identity["userId"] if self.identity is not None else f"sid:{self.sid}"
        refusals = self.srv.refusals
        async with refusals.turn(user):
            refusals.failed(user)

    def _origin(self) -> Origin:
        ident = self.identity
        return Origin(ident["userId"], ident["deviceId"], ident["clientId"])

    async def on_sync(self, data: Any, ack_id: int | None) -> None:
        started = time.perf_counter()
        try:
            req = parse_sync(data, self.srv.max_json_depth)
        except ValidationError as exc:
            await self._sync_event(_raw_sync(data), started, error=exc)
            raise
        doc_id = req.doc_id
        limit = self.srv.max_documents
        if limit and doc_id not in self.docs and len(self.docs) >= limit:
            exc = ValidationError(
                f"Too many documents open on this connection (at most {limit}): "
                "unsubscribe-doc some first."
            )
            await self._sync_event(req.as_wire(), started, error=exc)
            raise exc
        # Requests for one document queue up in this process, except pulls on a
        # provider whose reads take no lock (a pull never waits for writers).
        unlocked = not req.operations and getattr(self.srv.provider, "unlocked_reads", False)
        async with contextlib.nullcontext() if unlocked else self.srv.doc_lock(doc_id):
            first = doc_id not in self.docs
            if first:
                # Join the group before reading, so no dirty is missed.
                await self.layer_group_add(doc_group(doc_id))
            else:
                await self.layer_group_refresh(doc_group(doc_id))
            try:
                outcome = await self.srv.sync(req, self.identity, self._origin(), self.grants)
            except Exception as exc:
                self.grants.forget(doc_id)
                if first:
                    await self.layer_group_discard(doc_group(doc_id))
                await self._sync_event(req.as_wire(), started, error=exc)
                raise
            members = await self._subscribe(doc_id) if first else None
            response = {"data": outcome.as_wire(doc_id)}
            await self._ack(ack_id, response)
            if req.operations:
                await self._dirty(doc_id, members)
        self.srv.maybe_squash(doc_id, outcome.pending)
        await self._sync_event(req.as_wire(), started, outcome=outcome, members=members)

    async def _sync_event(self, req, started, *, outcome=None, error=None, members=None) -> None:
        """Fire sync_request for ``req`` (its wire fields), success or error."""
        if not self.srv.wants("sync_request"):
            return
        doc_id = req["docId"] if isinstance(req["docId"], str) else None
        if members is None:
            members = await self.srv.state.members(doc_id) if doc_id else []
        fields: dict[str, Any] = {
            "status": "error" if error is not None else "success",
            "req": req,
            "durationMs": (time.perf_counter() - started) * 1000,
            "clientsCount": len(members),
            "devicesCount": len({m.device_id for m in members}),
        }
        if outcome is not None:
            res = outcome.as_wire(doc_id)
            del res["docId"]
            fields["res"] = res
        else:
            wire = error if isinstance(error, DocsyncError) else None
            fields["error"] = {
                "type": wire.wire_type if wire else "DatabaseError",
                "message": wire.message if wire else str(error),
                "stack": None,
            }
        await self._emit_doc("sync_request", self._event(docId=doc_id, **fields))

    async def _subscribe(self, doc_id: str) -> list[Member]:
        ident = self.identity
        member = Member(self.channel_name, ident["userId"], ident["deviceId"], ident["clientId"])
        members = await self.srv.state.join(doc_id, member)
        self.docs.add(doc_id)
        await self._emit_doc("doc_subscribe", self._event(docId=doc_id))
        presence = await self.srv.state.get_presence(doc_id)
        if presence:
            await self.emit("presence", {"docId": doc_id, "presence": presence})
        await self._collaboration(doc_id, members)
        return members

    async def _collaboration(self, doc_id: str, members: list[Member]) -> None:
        has = has_collaborators(members)
        if any(m.channel != self.channel_name for m in members):
            await self.layer_group_send(
                doc_group(doc_id),
                {
                    "type": "docsync.collaboration",
                    "doc": doc_id,
                    "has": has,
                    "skip": self.channel_name,
                },
            )
        if doc_id in self.docs:
            await self.emit("collaboration", {"docId": doc_id, "hasCollaborators": has})

    async def _dirty(self, doc_id: str, members: list[Member] | None) -> None:
        if members is None:
            members = await self.srv.state.members(doc_id)
        device = self.identity["deviceId"]
        if any(m.device_id != device for m in members):
            await self.layer_group_send(doc_group(doc_id), dirty_message(doc_id, device))

    async def _leave(self, doc_id: str) -> list[Member]:
        """Unsubscribe from ``doc_id``; tell the others our presence is gone."""
        ident = self.identity
        member = Member(self.channel_name, ident["userId"], ident["deviceId"], ident["clientId"])
        self.docs.discard(doc_id)
        self.grants.forget(doc_id)
        remaining = await self.srv.state.leave(doc_id, member)
        await self.layer_group_discard(doc_group(doc_id))
        if remaining:
            await self.layer_group_send(
                doc_group(doc_id),
                {
                    "type": "docsync.presence",
                    "doc": doc_id,
                    "presence": {ident["clientId"]: None},
                    "skip": "",
                },
            )
        return remaining

    async def on_presence(self, data: Any, ack_id: int | None) -> None:
        req = parse_presence(data, self.srv.max_presence, self.srv.max_json_depth)
        if req.doc_id not in self.docs:
            raise PermissionDenied()
        await self.srv.check(
            "presence", {"docId": req.doc_id, "presence": req.presence}, self.identity, self.grants
        )
        client_id = self.identity["clientId"]
        await self.srv.state.set_presence(req.doc_id, client_id, req.presence)
        members = await self.srv.state.members(req.doc_id)
        if any(m.channel != self.channel_name for m in members):
            await self.layer_group_send(
                doc_group(req.doc_id),
                {
                    "type": "docsync.presence",
                    "doc": req.doc_id,
                    "presence": {client_id: req.presence},
                    "skip": self.channel_name,
                },
            )
        await self._ack(ack_id, {})

    async def on_unsubscribe(self, data: Any, ack_id: int | None) -> None:
        req = parse_doc_request(data, "unsubscribe-doc")
        await self.srv.check("unsubscribe-doc", {"docId": req.doc_id}, self.identity)
        if req.doc_id not in self.docs:
            await self._ack(ack_id, {"success": True})
            return
        remaining = await self._leave(req.doc_id)
        await self._ack(ack_id, {"success": True})
        await self._collaboration(req.doc_id, remaining)
        event = self._event(docId=req.doc_id, reason="unsubscribe-doc")
        await self._emit_doc("doc_unsubscribe", event)

    async def on_delete(self, data: Any, ack_id: int | None) -> None:
        req = parse_doc_request(data, "delete-doc")
        async with self.srv.doc_lock(req.doc_id):
            deleted = await self.srv.delete(req, self.identity)
        await self._ack(ack_id, {"success": True})
        if deleted:
            await self._emit_doc("doc_delete", self._event(docId=req.doc_id))

    _handlers = {
        "sync": on_sync,
        "presence": on_presence,
        "unsubscribe-doc": on_unsubscribe,
        "delete-doc": on_delete,
    }

    # -- channel-layer messages -----------------------------------------------

    async def docsync_dirty(self, message: dict[str, Any]) -> None:
        if message["doc"] in self.docs and message["device"] != self.identity["deviceId"]:
            await self.emit("dirty", {"docId": message["doc"]})

    async def docsync_presence(self, message: dict[str, Any]) -> None:
        if message["skip"] != self.channel_name and message["doc"] in self.docs:
            await self.emit("presence", {"docId": message["doc"], "presence": message["presence"]})

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
                    remaining = await self._leave(doc_id)
                    await self._collaboration(doc_id, remaining)
                    event = self._event(docId=doc_id, reason="access revoked")
                    await self._emit_doc("doc_unsubscribe", event)

    def _revocation_applies(self, message: dict[str, Any]) -> bool:
        if message.get("auth") is None:
            return True
        context = self.identity.get("context")
        if not isinstance(context, dict) or context.get("auth") != message["auth"]:
            return False
        if message.get("session") is None:
            return True
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return key is None or session_hash(key) == message["session"]

    async def _revoked(self, reason: str) -> None:
        # A Socket.IO DISCONNECT first: the official client does not reconnect after it.
        await self.send(text_data=p.EIO_MESSAGE + str(p.DISCONNECT))
        logger.info("docsync: closing %s: %s", self.sid, reason)
        self.request_end(reason)

    async def _unreadable(self, doc_ids: list[str]) -> list[str]:
        try:
            return await self.srv.unreadable(doc_ids, self.identity)
        except StorageUnavailable:
            return []  # logged once as an outage; the next request is authorized anyway
        except Exception:
            # Subscriptions stay; the next request is authorized again anyway.
            logger.exception("docsync: re-checking access of %s failed", self.sid)
            return []

    async def docsync_collaboration(self, message: dict[str, Any]) -> None:
        if message["skip"] != self.channel_name and message["doc"] in self.docs:
            await self.emit(
                "collaboration", {"docId": message["doc"], "hasCollaborators": message["has"]}
            )


def _user_group_of(identity: Event) -> str | None:
    """The revocation group of the connection's user (``docsync.revocation``)."""
    context = identity.get("context")
    pk = context.get("user_pk") if isinstance(context, dict) else None
    if pk is None:
        pk = identity["userId"]
    return user_group(pk)


async def _load_document(srv: DocSyncServer, doc_id: Any) -> Any:
    """The ``Document`` row of ``doc_id`` with the ORM provider, else ``None``."""
    from .providers.orm import ORMProvider

    provider = srv.provider
    if not isinstance(doc_id, str) or not isinstance(provider, ORMProvider):
        return None
    from .models import Document

    docs = Document.objects.using(provider.using).defer("snapshot")
    try:
        return await database_sync_to_async(docs.filter(doc_id=doc_id).first)()
    except Exception as exc:  # the database is down: the signal goes without it
        logger.debug("docsync: loading %r for a signal failed: %r", doc_id, exc)
        return None


def _raw_sync(data: Any) -> dict[str, Any]:
    """The wire fields of a sync request that failed validation, as they came."""
    data = data if isinstance(data, dict) else {}
    return {key: data.get(key) for key in ("type", "docId", "operations", "serializedDoc", "clock")}


def _client_address(scope: dict[str, Any]) -> str:
    """The client's address as the ASGI server saw it (behind a proxy: as the
    proxy headers middleware of the server, if trusted, rewrote it)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _refused_event(auth: Any, reason: str) -> Event:
    auth = auth if isinstance(auth, dict) else {}

    def known(key: str) -> str:
        value = auth.get(key)
        return value if isinstance(value, str) and value else "unknown"

    return Event(
        userId="unknown", deviceId=known("deviceId"), clientId=known("clientId"), reason=reason
    )
