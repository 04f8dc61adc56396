"""``DocSyncServer``: what a deployment chooses, and the policy of each request.

It holds the document bindings, the provider, ``authenticate``,
``authorize`` and the shared state backend, the listeners of the six server
events (``docsync.listeners``), and the policy steps a request runs in one
database hop (``docsync.hops``): authorize, sync, delete, squash. It knows
nothing of Socket.IO: the consumers (``docsync.consumers``) serve it, and
register each connection so that :meth:`DocSyncServer.close` can end them.
The server the ``DOCSYNC`` settings describe is built by ``docsync.default``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol

from django.core.exceptions import ImproperlyConfigured

from . import metrics
from .bindings.base import BaseBinding, BindingRegistry, load_binding
from .conf import docsync_settings
from .exceptions import AuthenticationFailed, PermissionDenied
from .grants import Grants, reads
from .hops import hop, is_async, is_nonblocking, nonblocking
from .identity import Identity
from .listeners import Event, Listeners
from .providers.base import BaseProvider
from .requests import DocRequest, SyncRequest
from .squash import squash_document
from .state import BaseState, InProcessState
from .sync import OwnerChanged, SyncOutcome, cached_pull, sync_document, sync_write
from .throttle import KeyedThrottle

# Grants, Event and nonblocking were defined here in 0.1: still importable.
__all__ = ["Connection", "DocSyncServer", "Event", "Grants", "nonblocking"]

logger = logging.getLogger(__name__)


class Connection(Protocol):
    """What the server needs of a connection it serves (a consumer)."""

    async def shutdown(self, reason: str, code: int = 1000) -> None:
        """End the connection (``reason`` as PROTOCOL §6 names it)."""


def _pull(doc_id: str) -> dict[str, Any]:
    """A sync that only reads ``doc_id``: what re-checking read access asks about."""
    return {"type": None, "docId": doc_id, "operations": [], "serializedDoc": None, "clock": 0}


class _SharedPull:
    """One read that identical pulls share (``DocSyncServer._shared_pull``)."""

    __slots__ = ("future", "started")

    def __init__(self) -> None:
        self.future: asyncio.Future[SyncOutcome] = asyncio.get_running_loop().create_future()
        self.started = False


def _write_checks(grant: tuple[str, str]) -> tuple[str | None, tuple[str, str] | None]:
    """What a write allowed by ``grant`` has the provider check: ``(owner, grant)``."""
    if grant[0] == "owner":
        return grant[1], None
    return None, grant


class _DocLock:
    """``DocSyncServer.doc_lock``: a document's lock, forgotten when nobody
    holds or waits for it (a class: a generator context manager costs more
    than the in-memory sync it wraps)."""

    __slots__ = ("locks", "doc_id", "entry")

    def __init__(self, locks: dict[str, list[Any]], doc_id: str) -> None:
        self.locks, self.doc_id = locks, doc_id

    async def __aenter__(self) -> None:
        entry = self.locks.get(self.doc_id)
        if entry is None:
            entry = self.locks[self.doc_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        self.entry = entry
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: Any) -> None:
        self.entry[0].release()
        self._leave()

    def _leave(self) -> None:
        entry = self.entry
        entry[1] -= 1
        if entry[1] == 0:
            self.locks.pop(self.doc_id, None)


def _remember(grants: Grants | None, doc_id: str, grant: Any, generation: int) -> None:
    """Keep what a request's decision allowed (``False``: forget what was held)."""
    if grants is None:
        return
    if grant is False:
        grants.forget(doc_id)
    else:
        grants.add(doc_id, grant, generation)


def _as_registry(doc_binding: Any) -> BindingRegistry:
    if isinstance(doc_binding, BindingRegistry):
        return doc_binding
    if isinstance(doc_binding, dict):
        return BindingRegistry.from_settings(doc_binding, None)
    if doc_binding is None or isinstance(doc_binding, BaseBinding):
        return BindingRegistry(default=doc_binding)
    return BindingRegistry(default=load_binding(doc_binding, "DEFAULT_BINDING"))


class DocSyncServer(Listeners):
    """A DocSync server: bindings, storage, policy and listeners.

    ``doc_binding`` is one binding for every document type, a dict mapping
    types to bindings, or a ``BindingRegistry``. ``authenticate(request)``
    returns ``{"userId", "context"}`` or ``None``; ``authorize(event)``
    returns a bool. Both may be plain or async callables; plain ones run in
    the request's database hop. Serve it with
    ``DocSyncConsumer.as_asgi(server=server)`` (``docsync.consumers``).
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
        super().__init__()
        s = docsync_settings
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
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._doc_locks: dict[str, list[Any]] = {}  # [lock, number of waiters]
        self._squashing: set[str] = set()
        self._squash_failed: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Pulls waiting for a database thread, by (doc, type, clock): see _shared_pull.
        self._pulls: dict[tuple[Any, ...], _SharedPull] = {}
        self._pull_guard = threading.Lock()
        # True once close() began: readiness (docsync.health) fails from then on.
        self.draining = False
        # Abuse costs the abuser (docsync.throttle): per client address and per user.
        self.login_failures = KeyedThrottle("CONNECT_FAILURE")
        self.refusals = KeyedThrottle("ERROR")
        self._user_connections: dict[str, int] = {}
        self._authorize_is_async = is_async(self.authorize)
        # The document authorize judges is read once, by the server, and
        # handed over as event["document"] (DocumentPermissions says so).
        self._loads_document = bool(getattr(self.authorize, "loads_document", False))
        # Skip the thread hop when nothing in a request can block: a provider
        # that says so (in memory) and an authorize that is async or marked
        # @nonblocking. A hop costs more than the whole in-memory sync.
        self._check_inline = is_nonblocking(self.authorize)
        # An authorize asked on the event loop before a request that needs no
        # hop: it never blocks, and it needs no document read for it.
        self._authorize_inline = self._check_inline and not self._loads_document
        self._inline = self._check_inline and not getattr(self.provider, "blocking", True)
        self._shares_pulls = getattr(self.provider, "unlocked_reads", False) and not self._inline
        # Pulls of busy documents answered from memory (PostgresProvider's tails).
        self._cached_pulls = hasattr(self.provider, "cached_pull")
        # Writes join the provider's group commit from the event loop (PostgresProvider).
        self._async_writes = bool(getattr(self.provider, "atomic_writes", False)) and hasattr(
            self.provider, "sync_write"
        )

    # -- authorization -------------------------------------------------------

    def _authorize_event(
        self, kind: str, req: dict[str, Any], identity: Identity, load: bool = True
    ) -> Event:
        event = identity.authorize_event(kind, req)
        doc_id = req.get("docId")
        if load and self._loads_document and kind != "unsubscribe-doc" and isinstance(doc_id, str):
            event["document"] = self.provider.document_for_permissions(doc_id)
        return event

    def _authorize(self, kind: str, req: dict[str, Any], identity: Identity) -> Event:
        """Ask ``authorize`` (in the current hop); raise ``PermissionDenied`` if refused."""
        event = self._authorize_event(kind, req, identity)
        if not self.authorize(event):
            raise PermissionDenied()
        return event

    async def _authorize_async(self, kind: str, req: dict[str, Any], identity: Identity) -> None:
        event = self._authorize_event(kind, req, identity, load=False)
        if not await self.authorize(event):
            raise PermissionDenied()

    async def check(
        self, kind: str, req: dict[str, Any], identity: Identity, grants: Grants | None = None
    ) -> None:
        """Authorize a request that needs no storage (presence, unsubscribe)."""
        if self._authorize_is_async:
            await self._authorize_async(kind, req, identity)
            return
        doc_id = req.get("docId")
        if (
            grants is not None
            and isinstance(doc_id, str)
            and reads(kind, req)
            and grants.get(doc_id) is not None
        ):
            return
        generation = grants.generation if grants is not None else 0
        event = await hop(self._check_inline, self._authorize, kind, req, identity)
        if grants is not None and isinstance(doc_id, str):
            grants.add(doc_id, self._kept(event.get("grant"), reads(kind, req)), generation)

    def _refused_reads(self, doc_ids: list[str], identity: Identity) -> list[str]:
        refused = []
        for doc_id in doc_ids:
            try:
                self._authorize("sync", _pull(doc_id), identity)
            except PermissionDenied:
                refused.append(doc_id)
        return refused

    async def unreadable(self, doc_ids: list[str], identity: Identity) -> list[str]:
        """The documents of ``doc_ids`` the connection may no longer read (one hop)."""
        if not self._authorize_is_async:
            return await hop(self._check_inline, self._refused_reads, doc_ids, identity)
        refused = []
        for doc_id in doc_ids:
            try:
                await self._authorize_async("sync", _pull(doc_id), identity)
            except PermissionDenied:
                refused.append(doc_id)
        return refused

    # -- sync and delete, each in one database hop ---------------------------

    def _sync_hop(
        self, req: SyncRequest, identity: Identity, authorized: bool, grant: Any
    ) -> tuple[SyncOutcome, Any]:
        """Authorize (unless ``grant`` or ``authorized`` says so) and sync.

        Returns the outcome and the grant to remember (``False``: forget the
        one held, the document changed owner).
        """
        expect_new, owner, condition, new_grant = False, None, None, None
        read = reads("sync", req.as_wire())
        if isinstance(grant, tuple) and not read:
            owner, condition = _write_checks(grant)  # the write checks the row
        elif grant is None and not authorized:
            event = self._authorize("sync", req.as_wire(), identity)
            # Allowed to create a document found missing: if it exists once
            # locked, someone else created it meanwhile, and this request
            # must be judged again.
            expect_new = "document" in event and event["document"] is None
            new_grant = event.get("grant")
        try:
            outcome = sync_document(
                self.provider,
                req,
                identity,
                self.bindings,
                expect_new=expect_new,
                owner=owner,
                grant=condition,
                max_depth=self.max_json_depth,
            )
        except OwnerChanged:
            outcome, new_grant = self._sync_hop(req, identity, authorized, None)
            return outcome, new_grant or False
        return outcome, self._kept(new_grant, read)

    def _kept(self, grant: Any, read: bool) -> Any:
        """``grant``, unless it allows writes the provider cannot check.

        Such a grant is kept as ``"view"`` when it was given for a read, and
        not at all when for a write (which is then decided every time).
        """
        if isinstance(grant, tuple) and grant[0] not in self.provider.verified_grants:
            return "view" if read else None
        return grant

    async def sync(
        self,
        req: SyncRequest,
        identity: Identity,
        grants: Grants | None = None,
        *,
        subscribed: bool = False,
    ) -> SyncOutcome:
        """Authorize and run a sync in one database hop.

        With ``grants`` (the connection's), what ``authorize`` allowed before
        is not asked again (see :class:`Grants`). ``subscribed``: the
        connection has been hearing the document's ``dirty`` since before an
        earlier sync of it, so a pull may be answered from the provider's
        memory of the document's newest batches (``docsync.providers.tail``:
        a write made meanwhile on another process is announced to it). A
        first sync always reads the database.
        """
        if self._authorize_is_async:
            await self._authorize_async("sync", req.as_wire(), identity)
        grant, generation, viewer_pull = None, 0, False
        if grants is not None:
            grant, generation = grants.get(req.doc_id), grants.generation
            if grant == "view" and not reads("sync", req.as_wire()):
                # A write is decided anew. A pull carrying the client's document
                # only reads once the document has a snapshot: answered from
                # memory when the provider's memory says so (it never stores).
                viewer_pull = not req.operations
                grant = None
        if req.operations and self._async_writes:
            written = await self._write_on_loop(req, identity, grant)
            if written is not None:
                outcome, new_grant = written
                _remember(grants, req.doc_id, new_grant, generation)
                return outcome
        if not req.operations:
            pulled = await self._pull_without_hop(req, identity, grant, viewer_pull, subscribed)
            if pulled is not None:
                return pulled
        outcome, new_grant = await hop(
            self._inline, self._sync_hop, req, identity, self._authorize_is_async, grant
        )
        _remember(grants, req.doc_id, new_grant, generation)
        return outcome

    async def _pull_without_hop(
        self, req: SyncRequest, identity: Identity, grant: Any, viewer_pull: bool, subscribed: bool
    ) -> SyncOutcome | None:
        """A pull answered from the provider's memory or by a shared read, or ``None``.

        Only when access is settled without the database: ``authorize`` is
        async (already asked), the connection holds a grant (a viewer's pull
        carrying her document: only from memory, which never stores), or
        ``authorize`` never blocks (asked here). The memory
        (``cached_pull``) only for a ``subscribed`` connection; a shared
        read (:meth:`_shared_pull`) only for a pull without a document.
        """
        cached = subscribed and self._cached_pulls
        shared = self._shares_pulls and req.serialized_doc is None
        if not (cached or shared):
            return None
        if not (self._authorize_is_async or grant is not None or viewer_pull):
            if not self._authorize_inline:
                return None
            self._authorize("sync", req.as_wire(), identity)
        if cached:
            outcome = cached_pull(self.provider, req, self.bindings)
            if outcome is not None:
                return outcome
        return await self._shared_pull(req, identity) if shared else None

    async def _write_on_loop(
        self, req: SyncRequest, identity: Identity, grant: Any
    ) -> tuple[SyncOutcome, Any] | None:
        """A write without a thread of its own (``atomic_writes``), or ``None``.

        Only when deciding access needs no database: ``authorize`` is async
        (already asked), the connection's grant covers the write (the
        provider checks the owner on the row it locks), or ``authorize``
        never blocks. Otherwise, and when the provider leaves the request to
        its transaction path, ``None``: the caller takes the database hop.
        """
        authorized = True
        if self._authorize_is_async:
            pass
        elif isinstance(grant, tuple):
            authorized = False
        elif self._authorize_inline:
            self._authorize("sync", req.as_wire(), identity)
        else:
            return None
        owner, condition = _write_checks(grant) if not authorized else (None, None)
        try:
            outcome = await sync_write(
                self.provider, req, identity, self.bindings, owner=owner, grant=condition
            )
        except OwnerChanged:
            decided, new_grant = await hop(
                False, self._sync_hop, req, identity, self._authorize_is_async, None
            )
            return decided, new_grant or False
        if outcome is None:  # the provider's transaction path
            return await hop(
                False, self._sync_hop, req, identity, authorized, None if authorized else grant
            )
        return outcome, None

    def heard(self, doc_id: str, clock: int | None) -> None:
        """A ``dirty`` reached this process: ``doc_id`` is at ``clock`` (``None``: unknown)."""
        heard = getattr(self.provider, "heard", None)
        if heard is not None:
            heard(doc_id, clock)

    async def _shared_pull(self, req: SyncRequest, identity: Identity) -> SyncOutcome:
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
                return await hop(False, sync_document, self.provider, req, identity, self.bindings)
        try:
            outcome = await hop(False, self._start_shared_pull, shared, key, req, identity)
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
        self, shared: _SharedPull, key: tuple[Any, ...], req: SyncRequest, identity: Identity
    ) -> SyncOutcome:
        with self._pull_guard:  # from here on, later pulls read anew
            shared.started = True
            if self._pulls.get(key) is shared:
                del self._pulls[key]
        return sync_document(self.provider, req, identity, self.bindings)

    def _delete_hop(self, req: DocRequest, identity: Identity, authorized: bool) -> bool:
        if not authorized:
            self._authorize("delete-doc", {"docId": req.doc_id}, identity)
        with self.provider.transaction("readwrite", req.doc_id) as tx:
            return tx.delete_doc()

    async def delete(self, req: DocRequest, identity: Identity) -> bool:
        """Authorize and delete a document (tombstone) in one database hop."""
        if self._authorize_is_async:
            await self._authorize_async("delete-doc", {"docId": req.doc_id}, identity)
        return await hop(self._inline, self._delete_hop, req, identity, self._authorize_is_async)

    # -- ordering and squashing --------------------------------------------

    def doc_lock(self, doc_id: str) -> AbstractAsyncContextManager[None]:
        """Serialize requests for one document within this process."""
        return _DocLock(self._doc_locks, doc_id)

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
        self.spawn(self._squash(doc_id, pending))

    async def _squash(self, doc_id: str, pending: int) -> None:
        """Squash off the event loop. A document whose squash fails is left as
        it was, logged once, and tried again only after another threshold's
        worth of batches (not on every sync)."""
        try:
            with metrics.SQUASH_SECONDS.time():
                await hop(False, squash_document, self.provider, self.bindings, doc_id)
        except Exception as exc:
            metrics.SQUASH_FAILURES.inc()
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

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; :meth:`close` waits for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- connections ----------------------------------------------------------

    def register(self, connection: Connection) -> None:
        """Serve ``connection`` (:meth:`close` ends it)."""
        self._connections.add(connection)

    def unregister(self, connection: Connection) -> None:
        """``connection`` ended."""
        self._connections.discard(connection)

    @property
    def connections(self) -> int:
        """Number of connections this process serves."""
        return len(self._connections)

    def open_connections(self) -> list[Connection]:
        """The connections this process serves (``docsync.drain`` ends them)."""
        return list(self._connections)

    @property
    def background_tasks(self) -> int:
        """Background tasks (squashes) still running."""
        return len(self._tasks)

    async def wait_background(self) -> None:
        """Wait for the background tasks (squashes), those they start too."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def max_documents(self) -> int:
        """Documents one connection may have open (``MAX_DOCUMENTS_PER_CONNECTION``)."""
        return int(docsync_settings.MAX_DOCUMENTS_PER_CONNECTION)

    @property
    def dirty_interval(self) -> float:
        """At most one ``dirty`` per document and interval, in seconds (``DIRTY_INTERVAL``)."""
        return float(docsync_settings.DIRTY_INTERVAL)

    def add_user_connection(self, user_id: str) -> None:
        """Count a connection of ``user_id``; refuse one over ``MAX_CONNECTIONS_PER_USER``."""
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
        """Close every connection of this process with ``server shutting down``,
        wait for the background work (squashes) and close the state backend."""
        self.draining = True
        connections = list(self._connections)
        await asyncio.gather(
            *(c.shutdown("server shutting down") for c in connections), return_exceptions=True
        )
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.state.close()

    #: The consumer class that serves a server, for the deprecated
    #: :meth:`as_asgi`; ``docsync.consumers`` (a layer above) sets it.
    consumer_class: ClassVar[Any] = None

    def as_asgi(self, **initkwargs: Any) -> Any:
        """Deprecated: ``DocSyncConsumer.as_asgi(server=server)`` (``docsync.consumers``)."""
        warnings.warn(
            "DocSyncServer.as_asgi() is deprecated: route "
            "docsync.consumers.DocSyncConsumer.as_asgi(server=server).",
            DeprecationWarning,
            stacklevel=2,
        )
        if self.consumer_class is None:
            raise ImproperlyConfigured(
                "DocSyncServer.as_asgi() needs docsync.consumers: route "
                "docsync.consumers.DocSyncConsumer.as_asgi(server=server) instead."
            )
        return self.consumer_class.as_asgi(server=self, **initkwargs)


DocSyncServer.signal_sender = DocSyncServer
