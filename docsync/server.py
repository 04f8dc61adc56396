"""``DocSyncServer``: the seed's server object, in Python.

It holds what a deployment chooses (document bindings, provider,
``authenticate``, ``authorize``, the shared state backend) and the listeners
of the five server events, and it owns the policy steps the consumer runs in
one database hop. ``as_asgi()`` routes it; ``close()`` closes every
connection this process serves.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from . import signals
from .bindings.base import BaseBinding, BindingRegistry, load_binding
from .events import DocRequest, SyncRequest
from .exceptions import AuthenticationFailed, PermissionDenied, StorageUnavailable
from .outage import StorageOutage, guarded
from .providers.base import BaseProvider, Origin
from .squash import squash_document
from .state import BaseState, InProcessState
from .sync import OwnerChanged, SyncOutcome, sync_document
from .throttle import KeyedThrottle

if TYPE_CHECKING:
    from .consumers import DocSyncConsumer

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)

EVENTS = (
    "client_connect",
    "client_disconnect",
    "doc_subscribe",
    "doc_unsubscribe",
    "sync_request",
    "doc_delete",
)

_SIGNALS = {
    "client_connect": signals.client_connected,
    "client_disconnect": signals.client_disconnected,
    "doc_subscribe": signals.doc_subscribed,
    "doc_unsubscribe": signals.doc_unsubscribed,
    "sync_request": signals.sync_finished,
    "doc_delete": signals.doc_deleted,
}

_CAMEL = re.compile(r"_([a-z])")


class Event(dict[str, Any]):
    """An event or request: a dict with the reference's (camelCase) keys.

    Attribute access takes the snake_case twins too: ``event.user_id`` is
    ``event["userId"]``, ``event.duration_ms`` is ``event["durationMs"]``.
    """

    def __getattr__(self, name: str) -> Any:
        key = _CAMEL.sub(lambda m: m.group(1).upper(), name)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(name) from None

    def snake(self) -> dict[str, Any]:
        """The same fields with snake_case names (for signal kwargs)."""
        return {re.sub(r"([A-Z])", r"_\1", k).lower(): v for k, v in self.items()}


def _pull(doc_id: str) -> dict[str, Any]:
    """A sync that only reads ``doc_id``: what re-checking read access asks about."""
    return {"type": None, "docId": doc_id, "operations": [], "serializedDoc": None, "clock": 0}


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


class _SharedPull:
    """One read that identical pulls share (``DocSyncServer._shared_pull``)."""

    __slots__ = ("future", "started")

    def __init__(self) -> None:
        self.future: asyncio.Future[SyncOutcome] = asyncio.get_running_loop().create_future()
        self.started = False


def _reads(kind: str, req: dict[str, Any]) -> bool:
    """Whether a request only reads (so that a ``"view"`` grant covers it)."""
    if kind == "presence":
        return True
    return kind == "sync" and not req.get("operations") and req.get("serializedDoc") is None


def nonblocking(func: F) -> F:
    """Mark a plain ``authorize`` that never blocks (no database, no I/O).

    With a non-blocking provider (``InMemoryProvider``) requests then run on
    the event loop, without a thread hop.
    """
    setattr(func, "nonblocking", True)  # noqa: B010  (read with getattr)
    return func


def _call_sync_or_async(func: Callable[..., Any], *args: Any) -> Any:
    """Call a plain or async callable from async code; plain ones run in a DB hop."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004
    ):
        return func(*args)
    return database_sync_to_async(guarded)(func, *args)


def _as_registry(doc_binding: Any) -> BindingRegistry:
    if isinstance(doc_binding, BindingRegistry):
        return doc_binding
    if isinstance(doc_binding, dict):
        return BindingRegistry.from_settings(doc_binding, None)
    if doc_binding is None or isinstance(doc_binding, BaseBinding):
        return BindingRegistry(default=doc_binding)
    return BindingRegistry(default=load_binding(doc_binding, "DEFAULT_BINDING"))


class DocSyncServer:
    """A DocSync server: bindings, storage, policy and listeners.

    ``doc_binding`` is one binding for every document type, a dict mapping
    types to bindings, or a ``BindingRegistry``. ``authenticate(request)``
    returns ``{"userId", "context"}`` or ``None``; ``authorize(event)``
    returns a bool. Both may be plain or async callables; plain ones run in
    the request's database hop.
    """

    def __init__(
        self,
        *,
        doc_binding: Any = None,
        provider: BaseProvider | None = None,
        authenticate: Callable[..., Any] | None = None,
        authorize: Callable[..., Any] | None = None,
        state: BaseState | None = None,
        squash_threshold: int | None = None,
        ping_interval: int | None = None,
        ping_timeout: int | None = None,
        max_payload: int | None = None,
        connect_timeout: int | None = None,
        max_unread: int | None = None,
        max_json_depth: int | None = None,
        max_presence: int | None = None,
    ) -> None:
        from .conf import docsync_settings as s

        self.bindings = _as_registry(doc_binding)
        if provider is None:
            from .providers.memory import InMemoryProvider

            provider = InMemoryProvider()
        self.provider = provider
        self.authenticate = authenticate or s.AUTHENTICATE
        self.authorize = authorize or s.AUTHORIZE
        self.state = state or InProcessState()
        self.squash_threshold = s.SQUASH_THRESHOLD if squash_threshold is None else squash_threshold
        self.ping_interval = ping_interval or s.PING_INTERVAL
        self.ping_timeout = ping_timeout or s.PING_TIMEOUT
        self.max_payload = max_payload or s.MAX_PAYLOAD
        self.connect_timeout = connect_timeout or s.CONNECT_TIMEOUT
        self.max_unread = max_unread or s.MAX_UNREAD
        self.max_json_depth = max_json_depth or s.MAX_JSON_DEPTH
        self.max_presence = max_presence or s.MAX_PRESENCE
        self._listeners: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}
        self._consumers: weakref.WeakSet[DocSyncConsumer] = weakref.WeakSet()
        self._doc_locks: dict[str, list[Any]] = {}  # [lock, number of waiters]
        self._squashing: set[str] = set()
        self._squash_failed: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()
        # Pulls waiting for a database thread, by (doc, type, clock): see _shared_pull.
        self._pulls: dict[tuple[Any, ...], _SharedPull] = {}
        self._pull_guard = threading.Lock()
        # True once close() began: readiness (docsync.health) fails from then on.
        self.draining = False
        # Abuse costs the abuser (docsync.throttle): per client address and per user.
        self.login_failures = KeyedThrottle("CONNECT_FAILURE")
        self.refusals = KeyedThrottle("ERROR")
        self._user_connections: dict[str, int] = {}
        self._authorize_is_async = inspect.iscoroutinefunction(self.authorize)
        # Skip the thread hop when nothing in a request can block: a provider
        # that says so (in memory) and an authorize that is async or marked
        # @nonblocking. A hop costs more than the whole in-memory sync.
        authorize_inline = self._authorize_is_async or getattr(self.authorize, "nonblocking", False)
        self._check_inline = authorize_inline
        self._inline = authorize_inline and not getattr(self.provider, "blocking", True)
        self._shares_pulls = getattr(self.provider, "unlocked_reads", False) and not self._inline

    # -- listeners ---------------------------------------------------------

    def _on(self, name: str, listener: Callable[..., Any]) -> Callable[[], None]:
        self._listeners[name].append(listener)

        def remove() -> None:
            if listener in self._listeners[name]:
                self._listeners[name].remove(listener)

        return remove

    def on_client_connect(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Call ``listener(event)`` after a client connects; returns a remover.

        Fields: userId, deviceId, clientId, context.
        """
        return self._on("client_connect", listener)

    def on_client_disconnect(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, reason."""
        return self._on("client_disconnect", listener)

    def on_doc_subscribe(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId."""
        return self._on("doc_subscribe", listener)

    def on_doc_unsubscribe(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId, reason."""
        return self._on("doc_unsubscribe", listener)

    def on_sync_request(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, status, req, res (on success),
        durationMs, clientsCount, devicesCount, error (on error)."""
        return self._on("sync_request", listener)

    def on_doc_delete(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId (a docsync addition)."""
        return self._on("doc_delete", listener)

    def wants(self, name: str) -> bool:
        """Whether anyone listens to ``name`` (so costly fields can be skipped)."""
        return bool(self._listeners[name]) or _SIGNALS[name].has_listeners()

    async def emit(self, name: str, event: Event, **extra: Any) -> None:
        """Run the listeners of ``name``, then send its Django signal.

        A listener or receiver that raises is logged and ignored.
        """
        for listener in list(self._listeners[name]):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("docsync %s listener %r failed", name, listener)
        signal = _SIGNALS[name]
        if signal.has_listeners():
            await self._send_signal(signal, **event.snake(), **extra)

    async def _send_signal(self, signal: Any, **kwargs: Any) -> None:
        for receiver, result in await signal.asend_robust(
            sender=DocSyncServer, server=self, **kwargs
        ):
            if isinstance(result, Exception):
                logger.error(
                    "docsync signal receiver %r failed: %s",
                    receiver,
                    result,
                    exc_info=(type(result), result, result.__traceback__),
                )

    def on_doc_restore(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Call ``listener(event)`` after a restore committed in this process.

        Any restore (``docsync.history.restore_document``: the admin, the
        Python or REST API), fed by the ``doc_restored`` signal, in the
        restoring thread; an ``async`` listener runs to completion there.
        Fields: userId, docId, clock (the new one), restoredFrom. Returns a
        remover.
        """

        def receiver(sender: Any, **kwargs: Any) -> None:
            event = Event(
                userId=kwargs["user_id"],
                docId=kwargs["doc_id"],
                clock=kwargs["clock"],
                restoredFrom=kwargs["restored_from"],
            )
            if inspect.iscoroutinefunction(listener):
                async_to_sync(listener)(event)
            else:
                listener(event)

        signals.doc_restored.connect(receiver, weak=False)

        def remove() -> None:
            signals.doc_restored.disconnect(receiver)

        return remove

    # -- policy, run in one database hop -----------------------------------

    def _authorize_event(self, kind: str, req: dict[str, Any], identity: Event) -> Event:
        # provider: so that an authorize can find the document (docsync.permissions).
        return Event(
            type=kind,
            req=Event(req),
            userId=identity["userId"],
            context=identity.get("context"),
            provider=self.provider,
        )

    def _authorize(self, kind: str, req: dict[str, Any], identity: Event) -> Event:
        event = self._authorize_event(kind, req, identity)
        if not self.authorize(event):
            raise PermissionDenied()
        return event

    @staticmethod
    async def _hop(inline: bool, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` in ONE database hop, or right here when nothing blocks."""
        if inline:
            return func(*args)
        # Not thread-sensitive: requests run in a pool of threads, each with
        # its own database connection, so syncs of different documents
        # proceed in parallel (the provider's row lock orders one document).
        try:
            result = await database_sync_to_async(
                guarded, thread_sensitive=False, executor=_database_executor()
            )(func, *args)
        except StorageUnavailable as exc:
            StorageOutage.failed(exc)
            raise
        StorageOutage.succeeded()
        return cast(T, result)

    async def check(
        self, kind: str, req: dict[str, Any], identity: Event, grants: Grants | None = None
    ) -> None:
        """Authorize a request that needs no storage (presence, unsubscribe)."""
        if self._authorize_is_async:
            await self._authorize_async(kind, req, identity)
            return
        doc_id = req.get("docId")
        if (
            grants is not None
            and isinstance(doc_id, str)
            and _reads(kind, req)
            and grants.get(doc_id) is not None
        ):
            return
        generation = grants.generation if grants is not None else 0
        event = await self._hop(self._check_inline, self._authorize, kind, req, identity)
        if grants is not None and isinstance(doc_id, str):
            grants.add(doc_id, event.get("grant"), generation)

    def _refused_reads(self, doc_ids: list[str], identity: Event) -> list[str]:
        refused = []
        for doc_id in doc_ids:
            try:
                self._authorize("sync", _pull(doc_id), identity)
            except PermissionDenied:
                refused.append(doc_id)
        return refused

    async def unreadable(self, doc_ids: list[str], identity: Event) -> list[str]:
        """The documents of ``doc_ids`` the connection may no longer read (one hop)."""
        if not self._authorize_is_async:
            return await self._hop(self._check_inline, self._refused_reads, doc_ids, identity)
        refused = []
        for doc_id in doc_ids:
            try:
                await self._authorize_async("sync", _pull(doc_id), identity)
            except PermissionDenied:
                refused.append(doc_id)
        return refused

    async def _authorize_async(self, kind: str, req: dict[str, Any], identity: Event) -> None:
        event = self._authorize_event(kind, req, identity)
        if not await self.authorize(event):
            raise PermissionDenied()

    def _sync_hop(
        self, req: SyncRequest, identity: Event, origin: Origin, authorized: bool, grant: Any
    ) -> tuple[SyncOutcome, Any]:
        """Authorize (unless ``grant`` or ``authorized`` says so) and sync.

        Returns the outcome and the grant to remember (``False``: forget the
        one held, the document changed owner).
        """
        expect_new, owner, new_grant = False, None, None
        if isinstance(grant, tuple) and not _reads("sync", req.as_wire()):
            owner = grant[1]  # allowed as the owner: the write checks the row
        elif grant is None and not authorized:
            event = self._authorize("sync", req.as_wire(), identity)
            # Authorized as the creator of a missing document (the default
            # authorize says so): if it exists once locked, someone else
            # created it meanwhile, and this request must be judged again.
            expect_new = "document" in event and event["document"] is None
            new_grant = event.get("grant")
        try:
            outcome = sync_document(
                self.provider,
                req,
                origin,
                self.bindings,
                expect_new=expect_new,
                owner=owner,
                max_depth=self.max_json_depth,
            )
        except OwnerChanged:
            outcome, new_grant = self._sync_hop(req, identity, origin, authorized, None)
            return outcome, new_grant or False
        return outcome, new_grant

    async def sync(
        self, req: SyncRequest, identity: Event, origin: Origin, grants: Grants | None = None
    ) -> SyncOutcome:
        """Authorize and run a sync in one database hop.

        With ``grants`` (the connection's), what ``authorize`` allowed before
        is not asked again (see :class:`Grants`).
        """
        if self._authorize_is_async:
            await self._authorize_async("sync", req.as_wire(), identity)
        grant, generation = None, 0
        if grants is not None:
            grant, generation = grants.get(req.doc_id), grants.generation
            if grant == "view" and not _reads("sync", req.as_wire()):
                grant = None  # a write is decided anew
        if self._shares_pulls and not req.operations and req.serialized_doc is None:
            if self._authorize_is_async or grant is not None:
                return await self._shared_pull(req, origin)
            if self._check_inline:  # a plain authorize that never blocks
                self._authorize("sync", req.as_wire(), identity)
                return await self._shared_pull(req, origin)
        outcome, new_grant = await self._hop(
            self._inline, self._sync_hop, req, identity, origin, self._authorize_is_async, grant
        )
        if grants is not None:
            if new_grant is False:
                grants.forget(req.doc_id)
            else:
                grants.add(req.doc_id, new_grant, generation)
        return outcome

    async def _shared_pull(self, req: SyncRequest, origin: Origin) -> SyncOutcome:
        """An authorized pull that shares one read with the same pulls queued with it.

        After a ``dirty`` every subscriber pulls the same document from the
        same clock at once. Pulls that arrive while an identical one waits
        for a database thread wait for its answer instead of queueing reads
        of their own: the read starts after each of them arrived, so each
        still sees everything committed before it asked.
        """
        key = (req.doc_id, req.doc_type, req.clock)
        with self._pull_guard:
            shared = self._pulls.get(key)
            if shared is None or shared.started:
                leader = shared = self._pulls[key] = _SharedPull()
            else:
                leader = None
        if leader is None:
            try:
                return await asyncio.shield(shared.future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not shared.future.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The leader's connection went away: read for ourselves.
                return await self._hop(False, sync_document, self.provider, req, origin)
        try:
            outcome = await self._hop(False, self._start_shared_pull, shared, key, req, origin)
        except asyncio.CancelledError:
            shared.future.cancel()
            raise
        except BaseException as exc:
            shared.future.set_exception(exc)
            shared.future.exception()  # retrieved: nobody may be waiting
            raise
        shared.future.set_result(outcome)
        return outcome

    def _start_shared_pull(
        self, shared: _SharedPull, key: tuple[Any, ...], req: SyncRequest, origin: Origin
    ) -> SyncOutcome:
        with self._pull_guard:  # from here on, later pulls read anew
            shared.started = True
            if self._pulls.get(key) is shared:
                del self._pulls[key]
        return sync_document(self.provider, req, origin, self.bindings)

    def _delete_hop(self, req: DocRequest, identity: Event, authorized: bool) -> bool:
        if not authorized:
            self._authorize("delete-doc", {"docId": req.doc_id}, identity)
        with self.provider.transaction("readwrite", req.doc_id) as tx:
            return tx.delete_doc()

    async def delete(self, req: DocRequest, identity: Event) -> bool:
        """Authorize and delete a document (tombstone) in one database hop."""
        if self._authorize_is_async:
            await self._authorize_async("delete-doc", {"docId": req.doc_id}, identity)
        return await self._hop(
            self._inline, self._delete_hop, req, identity, self._authorize_is_async
        )

    # -- ordering and squashing --------------------------------------------

    @asynccontextmanager
    async def doc_lock(self, doc_id: str) -> AsyncIterator[None]:
        """Serialize requests for one document within this process."""
        entry = self._doc_locks.get(doc_id)
        if entry is None:
            entry = self._doc_locks[doc_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._doc_locks.pop(doc_id, None)

    def maybe_squash(self, doc_id: str, pending: int) -> None:
        """Squash in the background once the log passes the threshold."""
        if (
            not self.squash_threshold
            or pending < self.squash_threshold
            or doc_id in self._squashing
            or pending < self._squash_failed.get(doc_id, 0) + self.squash_threshold
        ):
            return
        self._squashing.add(doc_id)
        task = asyncio.get_running_loop().create_task(self._squash(doc_id, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _squash(self, doc_id: str, pending: int) -> None:
        """Squash off the event loop. A document whose squash fails is left as
        it was, logged once, and tried again only after another threshold's
        worth of batches (not on every sync)."""
        try:
            await self._hop(False, squash_document, self.provider, self.bindings, doc_id)
        except Exception as exc:
            if doc_id not in self._squash_failed:
                logger.warning(
                    "docsync: squashing %r failed, the log is kept: %s: %s",
                    doc_id,
                    exc.__class__.__name__,
                    exc,
                )
            self._squash_failed[doc_id] = pending
        else:
            self._squash_failed.pop(doc_id, None)
        finally:
            self._squashing.discard(doc_id)

    # -- connections ----------------------------------------------------------

    def register(self, consumer: DocSyncConsumer) -> None:
        self._consumers.add(consumer)

    def unregister(self, consumer: DocSyncConsumer) -> None:
        self._consumers.discard(consumer)

    @property
    def connections(self) -> int:
        """Number of connections this process serves."""
        return len(self._consumers)

    @property
    def max_documents(self) -> int:
        """Documents one connection may have open (``MAX_DOCUMENTS_PER_CONNECTION``)."""
        from .conf import docsync_settings

        return docsync_settings.MAX_DOCUMENTS_PER_CONNECTION

    def add_user_connection(self, user_id: str) -> None:
        """Count a connection of ``user_id``; refuse one over ``MAX_CONNECTIONS_PER_USER``."""
        from .conf import docsync_settings

        limit = docsync_settings.MAX_CONNECTIONS_PER_USER
        count = self._user_connections.get(user_id, 0)
        if limit and count >= limit:
            raise AuthenticationFailed(f"Too many connections for this user (at most {limit})")
        self._user_connections[user_id] = count + 1

    def remove_user_connection(self, user_id: str) -> None:
        """A connection counted by :meth:`add_user_connection` ended."""
        count = self._user_connections.get(user_id, 0) - 1
        if count > 0:
            self._user_connections[user_id] = count
        else:
            self._user_connections.pop(user_id, None)

    def user_connections(self, user_id: str) -> int:
        """Connections ``user_id`` has open on this process."""
        return self._user_connections.get(user_id, 0)

    async def close(self) -> None:
        """Close every connection of this process with ``server shutting down``."""
        self.draining = True
        consumers = list(self._consumers)
        await asyncio.gather(
            *(c.shutdown("server shutting down") for c in consumers), return_exceptions=True
        )
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def as_asgi(self, **initkwargs: Any) -> Any:
        """The ASGI application serving this server (route it at ``socket.io/``)."""
        from .consumers import DocSyncConsumer

        return DocSyncConsumer.as_asgi(server=self, **initkwargs)


_executor: ThreadPoolExecutor | None = None


def _database_executor() -> ThreadPoolExecutor:
    """The threads (each with its own database connection) requests run in."""
    global _executor
    if _executor is None:
        from .conf import docsync_settings

        _executor = ThreadPoolExecutor(
            max_workers=docsync_settings.DATABASE_THREADS, thread_name_prefix="docsync-db"
        )
    return _executor


_default_server: DocSyncServer | None = None


def get_default_server() -> DocSyncServer:
    """The server built from the ``DOCSYNC`` settings (or ``DOCSYNC["SERVER"]``)."""
    global _default_server
    if _default_server is None:
        _default_server = _build_default_server()
    return _default_server


def _build_default_server() -> DocSyncServer:
    from .bindings import get_binding_registry
    from .conf import docsync_settings as s

    if s.SERVER is not None:
        server = (
            s.SERVER()
            if callable(s.SERVER) and not isinstance(s.SERVER, DocSyncServer)
            else s.SERVER
        )
        return cast(DocSyncServer, server)  # docsync.checks reports any other object
    provider_cls = s.PROVIDER
    provider = (
        provider_cls(**s.PROVIDER_OPTIONS) if isinstance(provider_cls, type) else provider_cls
    )
    state_cls = s.STATE_BACKEND or _default_state_backend()
    return DocSyncServer(
        doc_binding=get_binding_registry(),
        provider=provider,
        authenticate=s.AUTHENTICATE,
        authorize=s.AUTHORIZE,
        state=state_cls(**s.STATE_OPTIONS) if isinstance(state_cls, type) else state_cls,
    )


def _default_state_backend() -> type[BaseState]:
    from django.conf import settings

    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    if layer.get("BACKEND", "").startswith("channels_redis"):
        try:
            from .redis_state import RedisState
        except ImportError:
            return InProcessState
        return RedisState
    return InProcessState


def default_server_draining() -> bool:
    """Whether this process's default server has begun closing (never builds one)."""
    return _default_server is not None and _default_server.draining


def reset_default_server() -> None:
    """Forget the default server (settings changed)."""
    global _default_server
    _default_server = None
