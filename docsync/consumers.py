"""The DocSync consumer: what the client's events mean.

One consumer per WebSocket, on top of the connection's subscriptions
(``docsync.subscriptions``), Socket.IO (``docsync.socketio_consumer``) and
Engine.IO (``docsync.transport``). It authenticates the CONNECT
(``docsync.handshake``), parses each request (``docsync.requests``) and hands
it to the :class:`~docsync.server.DocSyncServer` it serves for policy and
storage, then answers and fans out through the channel layer
(``docsync.groups``). Requests of one connection are handled one at a time,
in arrival order; requests for one document never interleave.

A new client event is one handler in :attr:`DocSyncConsumer.handlers` and
its payload's parser in ``docsync.requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import groups, logs, metrics
from .exceptions import (
    DocSyncError,
    InvalidValue,
    PermissionDenied,
    StorageUnavailable,
    ValidationError,
)
from .handshake import handshake
from .listeners import Event
from .requests import parse_doc_request, parse_presence, parse_sync
from .server import DocSyncServer
from .state import Member
from .subscriptions import NOT_LOADED, SubscriptionConsumer
from .sync import SyncOutcome
from .throttle import Backoff
from .transport import new_sid

logger = logging.getLogger(__name__)

#: Kept importable here (0.1); the group names live in ``docsync.groups``.
doc_group = groups.doc_group


class DocSyncConsumer(SubscriptionConsumer):
    """Serves one DocSync client: handshake, requests, fan-out and revocation."""

    def init_session(self) -> None:
        super().init_session()
        self.user_group: str | None = None
        # Drops the transport when the connection's token expires.
        self.expiry: asyncio.TimerHandle | None = None
        # For the connection's end line (docsync.logs).
        self.opened = time.monotonic()
        self.refused: str | None = None
        from .conf import docsync_settings as s

        self.backoff = Backoff(s.REFUSAL_BACKOFF, s.REFUSAL_BACKOFF_MAX)
        self.held_answers: set[asyncio.Task[None]] = set()

    # -- connecting and leaving ------------------------------------------------

    async def on_connect(self, auth: Any) -> None:
        if self.identity is not None:
            await self.shutdown("transport close")
            return
        address = _client_address(self.scope)
        failures = self.server.login_failures
        try:
            # An address that keeps failing waits its turn (one at a time).
            async with failures.turn(address):
                try:
                    identity = await handshake(self.server.authenticate, self.scope, auth)
                except StorageUnavailable:
                    raise  # not the client's failure
                except DocSyncError:
                    failures.failed(address)
                    raise
                self.server.add_user_connection(identity.user_id)
        except StorageUnavailable as exc:
            # Closing the transport (not CONNECT_ERROR, after which the official
            # client gives up) makes clients reconnect until storage is back.
            self.refused = exc.message
            metrics.refused(exc.message)
            await self.server.emit("client_disconnect", _refused_event(auth, exc.message))
            self.request_end(exc.message, code=1013)
            return
        except DocSyncError as exc:
            await self._refuse_connect(auth, exc.message)
            return
        self.identity = identity
        if self.connect_deadline is not None:
            self.connect_deadline.cancel()
        self._expire_at(identity.expires_at)
        # Before answering, so that no revocation can slip in between.
        self.user_group = groups.user_group(identity.user_pk)
        await self.layer_group_add(self.user_group)
        await self.accept_namespace(new_sid())
        metrics.connected()
        await self.emit("identity", {"userId": identity.user_id})
        await self.server.emit(
            "client_connect", identity.event(context=identity.context), user=identity.user
        )

    async def on_invalid_connect(self, exc: InvalidValue) -> None:
        # A CONNECT whose auth holds a refused value: refuse it as clearly.
        await self._refuse_connect(None, f"Invalid handshake: {exc.message}")

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
        metrics.refused(message)
        await self.refuse_namespace(message)
        await self.server.emit("client_disconnect", _refused_event(auth, message))

    async def on_namespace_disconnect(self) -> None:
        await self._leave_namespace("client namespace disconnect")

    async def on_end(self, reason: str) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        identity, doc_ids = self.identity, sorted(self.docs)
        try:
            await self._leave_namespace(reason)
        finally:
            logs.connection_ended(
                self._sid_or_new(),
                identity.user_id if identity is not None else None,
                doc_ids,
                reason,
                time.monotonic() - self.opened,
                self.refused,
            )

    async def _leave_namespace(self, reason: str) -> None:
        identity = self.identity
        if identity is None:
            return
        for doc_id in list(self.docs):
            try:
                await self._unsubscribe(doc_id, reason)
            except Exception:  # the other documents are still left
                logger.exception("docsync: leaving %r on %s failed", doc_id, reason)
        self.server.remove_user_connection(identity.user_id)
        self.identity = None
        metrics.disconnected()
        for task in self.held_answers:
            task.cancel()
        if self.user_group is not None:
            await self.layer_group_discard(self.user_group)
        await self.server.emit(
            "client_disconnect", identity.event(reason=reason), user=identity.user
        )

    # -- requests ---------------------------------------------------------------

    async def on_event(self, name: str, arg: Any, ack_id: int | None) -> None:
        handler = self.handlers.get(name)
        doc_id = arg.get("docId") if isinstance(arg, dict) else None
        doc_id = doc_id if isinstance(doc_id, str) else None
        try:
            if handler is None:
                raise ValidationError(f"Unknown event: {name}")
            await handler(self, arg, ack_id)
        except DocSyncError as exc:
            self._request_failed(name, arg, exc)
            error: DocSyncError | None = exc
        except Exception as exc:
            logger.exception("docsync: %s failed", name)
            self._request_failed(name, arg, exc)
            error = None  # answered as an internal error, never with its text
        else:
            metrics.request(name, "ok")
            if doc_id is not None:
                self.backoff.succeeded(doc_id)
            return
        if ack_id is not None:
            await self._refuse(ack_id, error, name, doc_id)

    async def on_invalid(
        self, ack_id: int | None, exc: DocSyncError, *, request: bool = False
    ) -> None:
        if request:
            self._request_failed("", None, exc)
        if ack_id is not None:
            await self._answer_error(ack_id, exc)

    async def on_sync(self, data: Any, ack_id: int | None) -> None:
        """``sync``: store the client's operations, answer what it misses (PROTOCOL §4)."""
        started = time.perf_counter()
        try:
            req = parse_sync(data, self.server.max_json_depth)
        except ValidationError as exc:
            await self._sync_event(_raw_sync(data), started, error=exc)
            raise
        doc_id = req.doc_id
        limit = self.server.max_documents
        if limit and doc_id not in self.docs and len(self.docs) >= limit:
            too_many = ValidationError(
                f"Too many documents open on this connection (at most {limit}): "
                "unsubscribe-doc some first."
            )
            await self._sync_event(req.as_wire(), started, error=too_many)
            raise too_many
        # Requests for one document queue up in this process, except pulls on a
        # provider whose reads take no lock (a pull never waits for writers)
        # and writes on one whose writes are atomic in the database (they
        # share a group commit instead of waiting for each other here).
        provider = self.server.provider
        if req.operations:
            unlocked = getattr(provider, "atomic_writes", False)
        else:
            unlocked = getattr(provider, "unlocked_reads", False)
        group = groups.doc_group(doc_id)
        async with contextlib.nullcontext() if unlocked else self.server.doc_lock(doc_id):
            first = doc_id not in self.docs
            if first:
                # Join the group before reading, so no dirty is missed.
                await self.layer_group_add(group)
            else:
                await self.layer_group_refresh(group)
            try:
                outcome = await self.server.sync(
                    req, self._identity(), self.grants, subscribed=not first
                )
            except Exception as exc:
                self.grants.forget(doc_id)
                if first:
                    await self.layer_group_discard(group)
                await self._sync_event(req.as_wire(), started, error=exc)
                raise
            document: Any = NOT_LOADED
            members = None
            if first:
                document = await self._signal_document(doc_id)
                members = await self._subscribe(doc_id, document)
            await self.ack(ack_id, {"data": outcome.as_wire(doc_id)})
            self.answered[doc_id] = outcome.clock
            metrics.synced(time.perf_counter() - started, len(req.operations))
            if req.operations:
                members = await self._dirty(doc_id, members, outcome.clock)
        self.server.maybe_squash(doc_id, outcome.pending)
        await self._sync_event(
            req.as_wire(), started, outcome=outcome, members=members, document=document
        )

    async def on_presence(self, data: Any, ack_id: int | None) -> None:
        """``presence``: relay this client's presence to the document's others."""
        req = parse_presence(data, self.server.max_presence, self.server.max_json_depth)
        if req.doc_id not in self.docs:
            raise PermissionDenied()
        identity = self._identity()
        await self.server.check(
            "presence", {"docId": req.doc_id, "presence": req.presence}, identity, self.grants
        )
        await self.server.state.set_presence(req.doc_id, identity.client_id, req.presence)
        members = await self.server.state.members(req.doc_id)
        if any(m.channel != self.channel_name for m in members):
            await self.layer_group_send(
                groups.doc_group(req.doc_id),
                groups.presence(req.doc_id, {identity.client_id: req.presence}, self.channel_name),
            )
        await self.ack(ack_id, {})

    async def on_unsubscribe(self, data: Any, ack_id: int | None) -> None:
        """``unsubscribe-doc``: stop hearing about a document."""
        req = parse_doc_request(data, "unsubscribe-doc")
        await self.server.check("unsubscribe-doc", {"docId": req.doc_id}, self._identity())
        if req.doc_id not in self.docs:
            await self.ack(ack_id, {"success": True})
            return
        await self._unsubscribe(req.doc_id, "unsubscribe-doc", ack_id=ack_id)

    async def on_delete(self, data: Any, ack_id: int | None) -> None:
        """``delete-doc``: tombstone a document."""
        req = parse_doc_request(data, "delete-doc")
        identity = self._identity()
        async with self.server.doc_lock(req.doc_id):
            deleted = await self.server.delete(req, identity)
        await self.ack(ack_id, {"success": True})
        if deleted:
            await self._emit_doc("doc_delete", identity.event(docId=req.doc_id))

    #: The client's events and their handlers (payload parsers: ``docsync.requests``).
    handlers: dict[str, Callable[[DocSyncConsumer, Any, int | None], Awaitable[None]]] = {
        "sync": on_sync,
        "presence": on_presence,
        "unsubscribe-doc": on_unsubscribe,
        "delete-doc": on_delete,
    }

    # -- answering refusals -------------------------------------------------------

    async def _refuse(
        self, ack_id: int, exc: DocSyncError | None, name: str, doc_id: str | None
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
        metrics.request_failed(name if name in self.handlers else "unknown", exc)
        if isinstance(exc, StorageUnavailable):
            return
        logs.request_failed(
            self.sid,
            self.identity.user_id if self.identity is not None else None,
            name,
            arg.get("docId") if isinstance(arg, dict) else None,
            exc.wire_type if isinstance(exc, DocSyncError) else "DatabaseError",
            exc.message if isinstance(exc, DocSyncError) else "Internal server error",
        )

    async def _answer_error(self, ack_id: int, exc: Exception | None, name: str = "") -> None:
        await self._throttle()
        if isinstance(exc, DocSyncError):
            error = {"type": exc.wire_type, "message": exc.message}
        else:
            error = {"type": "DatabaseError", "message": "Internal server error"}
        body: dict[str, Any] = {"error": error}
        if name in ("delete-doc", "unsubscribe-doc"):
            body = {"success": False, "error": error}
        await self.ack(ack_id, body)

    async def _throttle(self) -> None:
        """Slow down a user whose requests keep failing, over all its
        connections (the official client retries at once, forever)."""
        user = self.identity.user_id if self.identity is not None else f"sid:{self.sid}"
        refusals = self.server.refusals
        async with refusals.turn(user):
            refusals.failed(user)

    # -- listener events -----------------------------------------------------------

    async def _sync_event(
        self,
        req: dict[str, Any],
        started: float,
        *,
        outcome: SyncOutcome | None = None,
        error: Exception | None = None,
        members: list[Member] | None = None,
        document: Any = NOT_LOADED,
    ) -> None:
        """Fire sync_request for ``req`` (its wire fields), success or error."""
        if not self.server.wants("sync_request"):
            return
        doc_id = req["docId"] if isinstance(req["docId"], str) else None
        if members is None:
            members = await self.server.state.members(doc_id) if doc_id else []
        fields: dict[str, Any] = {
            "status": "error" if error is not None else "success",
            "req": req,
            "durationMs": (time.perf_counter() - started) * 1000,
            "clientsCount": len(members),
            "devicesCount": len({m.device_id for m in members}),
        }
        if outcome is not None:
            res = outcome.as_wire(doc_id or "")
            del res["docId"]
            fields["res"] = res
        else:
            wire = error if isinstance(error, DocSyncError) else None
            fields["error"] = {
                "type": wire.wire_type if wire else "DatabaseError",
                "message": wire.message if wire else str(error),
                "stack": None,
            }
        await self._emit_doc(
            "sync_request", self._identity().event(docId=doc_id, **fields), document
        )


# What the deprecated DocSyncServer.as_asgi() routes (the server sits below).
DocSyncServer.consumer_class = DocSyncConsumer


# What the deprecated DocSyncServer.as_asgi() routes (the server sits below).
DocSyncServer.consumer_class = DocSyncConsumer


def _raw_sync(data: Any) -> dict[str, Any]:
    """The wire fields of a sync request that failed validation, as they came."""
    data = data if isinstance(data, dict) else {}
    return {key: data.get(key) for key in ("type", "docId", "operations", "serializedDoc", "clock")}


def _client_address(scope: Mapping[str, Any]) -> str:
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
