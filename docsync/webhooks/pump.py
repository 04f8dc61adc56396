"""The webhook pump: one asyncio task per process that turns changes into outbox
rows and sends the rows that are due.

In a server process it starts with the first connection (:func:`attach`);
``manage.py docsync_webhooks`` runs one on its own. Each round it

1. checks the documents this process changed that have been quiet for
   ``WEBHOOK_QUIET`` seconds (``docsync.changes``) and writes their
   events, with the connection events of the round;
2. every ``WEBHOOK_SWEEP_INTERVAL`` seconds, walks all documents for those
   whose row differs from its cursor (changes another process, the admin or
   a crash left unannounced);
3. claims the due deliveries and sends them, ``WEBHOOK_CONCURRENCY`` at a time.

Its database work runs in a thread of its own (one connection), never in the
threads that serve syncs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.db import connections

from .. import changes as hints
from ..conf import docsync_settings
from . import outbox
from .delivery import client_session, deliver
from .types import Receiver, settings_receivers

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Deliveries claimed per round, and documents looked at per sweep query.
BATCH = 100
SWEEP_PAGE = 1000
#: Seconds the admin receivers are remembered (with none configured at all: IDLE_TTL).
RECEIVERS_TTL = 5.0
IDLE_TTL = 30.0


def database_of(provider: Any) -> str | None:
    """The database alias of a database-backed provider (``ORMProvider`` and
    subclasses), ``None`` for others (webhooks need the outbox table)."""
    from ..providers.orm import ORMProvider

    return provider.using if isinstance(provider, ORMProvider) else None


class WebhookPump:
    """Announces and delivers the webhook events of one database."""

    def __init__(self, using: str, *, deliver: bool = True, sweep: bool = True) -> None:
        self.using = using
        self.delivers, self.sweeps = deliver, sweep
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="docsync-webhooks")
        self.client_events: list[outbox.Event] = []
        self.connected: Counter[tuple[str, str, str]] = Counter()
        self.failing: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self._admin: list[Receiver] = []
        self._admin_at = -IDLE_TTL
        self._receivers: list[Receiver] = []
        self._sweep_at = 0.0  # monotonic time of the next sweep (the first: at once)
        self._failed_steps: set[str] = set()
        self._session: Any = None

    # -- in a server process --------------------------------------------------

    def start(self) -> None:
        """Run in the background on the running loop (once)."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())

    def client_connected(self, event: Any) -> None:
        """The ``client_connect`` listener: queue a ``client.connected``."""
        self.start()
        key = (event["userId"], event["deviceId"], event["clientId"])
        self.connected[key] += 1
        self.client_events.append(("client.connected", "", _client_data(event)))

    def client_disconnected(self, event: Any) -> None:
        """The ``client_disconnect`` listener: a ``client.disconnected`` for a connected client."""
        key = (event["userId"], event["deviceId"], event["clientId"])
        if self.connected[key] <= 0:
            return  # a refused connection: it never connected
        self.connected[key] -= 1
        if not self.connected[key]:
            del self.connected[key]
        data = {**_client_data(event), "reason": event.get("reason")}
        self.client_events.append(("client.disconnected", "", data))

    # -- the rounds -------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> None:
        """Pump until cancelled (``until_idle``: until a round finds nothing due)."""
        try:
            while True:
                busy = await self.round()
                if until_idle and not busy and await self.idle():
                    return
                if not busy:
                    await asyncio.sleep(self.pause())
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    def pause(self) -> float:
        """Seconds until the next round: ``WEBHOOK_POLL_INTERVAL``, or less when a
        document's quiet period ends sooner (its event then goes out at once)."""
        s = docsync_settings
        due = hints.next_due(s.WEBHOOK_QUIET, s.WEBHOOK_MAX_DELAY)
        poll = float(s.WEBHOOK_POLL_INTERVAL)
        return poll if due is None else min(poll, due)

    async def idle(self) -> bool:
        """Whether nothing waits: no document for its quiet period, no delivery due."""
        if hints.pending_count() or self.client_events:
            return False
        return not await self.db(outbox.any_due, self.using)

    async def round(self) -> bool:
        """One round; whether a full batch was sent (more may be due at once)."""
        receivers = await self._step("receivers", self.receivers, self._receivers)
        self._receivers = receivers
        if not receivers:
            hints.disable()  # nothing to announce: syncs keep no hints
            self.client_events.clear()
            return False
        hints.enable()
        await self._step("announce", self.announce, None, receivers)
        if self.sweeps and time.monotonic() >= self._sweep_at:
            await self._step("sweep", self.sweep, None, receivers)
        if self.delivers:
            return bool(await self._step("deliver", self.deliver, 0, receivers) == BATCH)
        return False

    async def _step(self, name: str, func: Callable[..., Any], failed: Any, *args: Any) -> Any:
        """Run one step; a failure (the database gone) is logged once and retried next round."""
        try:
            result = await func(*args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if name not in self._failed_steps:
                self._failed_steps.add(name)
                logger.warning(
                    "docsync webhooks: %s failed, retrying: %s: %s",
                    name,
                    exc.__class__.__name__,
                    exc,
                )
            return failed
        if name in self._failed_steps:
            self._failed_steps.discard(name)
            logger.info("docsync webhooks: %s works again", name)
        return result

    async def db(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in the pump's database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, partial(_in_thread, self.using, func, *args)
        )

    async def receivers(self) -> list[Receiver]:
        """Those of ``DOCSYNC["WEBHOOKS"]`` and the active ones of the admin.

        The admin's are read every ``RECEIVERS_TTL`` seconds, or every
        ``IDLE_TTL`` seconds while there is no receiver at all (then the
        pump's connection is closed in between: a process without webhooks
        holds none).
        """
        configured = settings_receivers(docsync_settings.WEBHOOKS)
        ttl = RECEIVERS_TTL if configured or self._admin else IDLE_TTL
        if time.monotonic() - self._admin_at >= ttl:
            self._admin = await self.db(_admin_receivers, self.using, not configured)
            self._admin_at = time.monotonic()
        return configured + self._admin

    async def announce(self, receivers: list[Receiver]) -> None:
        """Write the events of quiet documents and of connections."""
        s = docsync_settings
        due = {
            d: first
            for (u, d), first in hints.take_due(s.WEBHOOK_QUIET, s.WEBHOOK_MAX_DELAY).items()
            if u == self.using
        }
        if due:
            await self.check(due, receivers)
        if self.client_events:
            events, self.client_events = self.client_events, []
            try:
                await self.db(outbox.write_events, self.using, events, receivers)
            except Exception:
                self.client_events[:0] = events  # kept for the next round
                raise

    async def check(self, due: dict[str, float], receivers: list[Receiver]) -> None:
        """Compare ``due`` (doc_id -> first noted) with the cursors; put back what is not quiet."""
        s, now = docsync_settings, time.monotonic()
        overdue = {doc_id: now - first >= s.WEBHOOK_MAX_DELAY for doc_id, first in due.items()}
        try:
            found = await self.db(
                outbox.check_documents, self.using, overdue, receivers, s.WEBHOOK_QUIET
            )
        except Exception:
            for doc_id, first in due.items():
                hints.put_back(
                    (self.using, doc_id), first, s.WEBHOOK_POLL_INTERVAL, s.WEBHOOK_QUIET
                )
            raise
        for doc_id, wait in found.later.items():
            hints.put_back((self.using, doc_id), due[doc_id], wait, s.WEBHOOK_QUIET)

    async def sweep(self, receivers: list[Receiver]) -> None:
        """Check every document whose row differs from its cursor, a page at a time."""
        after: int | None = 0
        while after is not None:
            differ, after = await self.db(outbox.sweep, self.using, after, SWEEP_PAGE)
            if differ:
                await self.check(dict.fromkeys(differ, time.monotonic()), receivers)
        self._sweep_at = time.monotonic() + docsync_settings.WEBHOOK_SWEEP_INTERVAL

    async def deliver(self, receivers: list[Receiver]) -> int:
        """Send the due deliveries; return how many were claimed."""
        s = docsync_settings
        # Leased for as long as the batch can take (every attempt timing out), and more.
        lease = s.WEBHOOK_TIMEOUT * -(-BATCH // s.WEBHOOK_CONCURRENCY) + 30
        claimed = await self.db(outbox.claim, self.using, BATCH, lease)
        if not claimed:
            return 0
        if self._session is None:
            self._session = client_session(s.WEBHOOK_TIMEOUT)
        by_key = {r.key: r for r in receivers}
        limit = asyncio.Semaphore(s.WEBHOOK_CONCURRENCY)

        async def send(c: outbox.Claimed) -> outbox.Result:
            async with limit:
                return await deliver(self._session, by_key.get(c.receiver), c)

        results = await asyncio.gather(*(send(c) for c in claimed))
        failed = await self.db(
            outbox.record,
            self.using,
            results,
            s.WEBHOOK_MAX_ATTEMPTS,
            s.WEBHOOK_RETRY_DELAY,
            s.WEBHOOK_RETRY_MAX_DELAY,
        )
        await self._recovered(results, failed)
        return len(claimed)

    async def _recovered(self, results: list[outbox.Result], failed: set[str]) -> None:
        """A receiver that answers again gets its backlog at once, not after its back-off."""
        answered = {
            r.claimed.receiver
            for r in results
            if r.ok and (r.claimed.attempts or r.claimed.receiver in self.failing)
        }
        self.failing = (self.failing | failed) - (answered - failed)
        for key in answered - failed:
            await self.db(outbox.retry_backlog, self.using, key)


def _client_data(event: Any) -> dict[str, Any]:
    return {
        "user_id": event["userId"],
        "device_id": event["deviceId"],
        "client_id": event["clientId"],
    }


def _admin_receivers(using: str, close_if_none: bool) -> list[Receiver]:
    receivers = outbox.admin_receivers(using)
    if not receivers and close_if_none:
        connections[using].close()
    return receivers


def _in_thread(using: str, func: Callable[..., T], *args: Any) -> T:
    """Run ``func``; drop a connection that broke, so that the next round reconnects."""
    try:
        return func(*args)
    except Exception:
        connections[using].close_if_unusable_or_obsolete()
        raise


def attach(server: Any) -> WebhookPump | None:
    """Give ``server`` a webhook pump (nothing when its provider keeps no database).

    The default server gets one; call this for a server you build yourself.
    """
    using = database_of(server.provider)
    if using is None:
        return None
    here = docsync_settings.WEBHOOK_IN_SERVER
    pump = WebhookPump(using, deliver=here, sweep=here)
    server.on_client_connect(pump.client_connected)
    server.on_client_disconnect(pump.client_disconnected)
    return pump
