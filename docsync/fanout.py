"""Channel-layer plumbing that survives the layer going away.

With channels-redis, Redis may restart or be unreachable for a while. Syncing
only needs the database, so the consumer must keep serving: a failed
``group_send`` costs the others a ``dirty`` hint (they catch up on their next
sync), never an error to the sender, and the receive loop waits and retries
instead of dying with the connection. Outages are logged once per process.
Groups are re-added on activity and on every heartbeat once they are old,
so a connection that outlives the layer's group expiry keeps receiving, and
every group of every connection (documents, users, sessions) is re-added
after the layer comes back (:func:`rejoin_groups`), so revocation still
reaches connections opened before a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.sessions import InstanceSessionWrapper

from . import metrics

logger = logging.getLogger(__name__)

#: Re-add a group this often (seconds) while the connection is active in it.
GROUP_REFRESH = 3600.0
#: Give up on one channel-layer call after this many seconds (a wedged layer
#: must not wedge the connection, nor the server's shutdown).
LAYER_TIMEOUT = 3.0


class _Outage:
    """Log a channel-layer outage once, and its end once."""

    down = False

    @classmethod
    def failed(cls, action: str, exc: Exception) -> None:
        metrics.channel_layer_failed(action)
        if not cls.down:
            cls.down = True
            logger.error(
                "docsync: the channel layer failed (%s: %s: %s); syncing goes on, "
                "fan-out to other connections pauses until it is back.",
                action,
                exc.__class__.__name__,
                exc,
            )

    @classmethod
    def ok(cls) -> None:
        if cls.down:
            cls.down = False
            logger.warning("docsync: the channel layer is back.")


#: Every consumer of this process (to re-join their groups after a restart).
_live: weakref.WeakSet[FanOutMixin] = weakref.WeakSet()


async def rejoin_groups() -> int:
    """Re-add every group of every connection of this process; return how many failed.

    Called when the layer lost its groups (a Redis restart): documents, users
    and sessions alike, so revocation still reaches older connections.
    """
    failed = 0
    for consumer in list(_live):
        failed += await consumer.layer_groups_rejoin()
    return failed


async def group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    """``layer.group_send``; a failure or a wedged layer is logged, never raised."""
    try:
        async with asyncio.timeout(LAYER_TIMEOUT):
            await layer.group_send(group, message)
    except Exception as exc:
        _Outage.failed("group_send", exc)


Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


class _Throttle:
    """A throttled group's window: the message that waits for its end, if any."""

    __slots__ = ("layer", "group", "merge", "interval", "pending", "first", "sending")

    def __init__(self, layer: Any, group: str, merge: Merge, interval: float) -> None:
        self.layer, self.group, self.merge, self.interval = layer, group, merge, interval
        self.pending: dict[str, Any] | None = None
        #: ``pending`` is the window's first message, waiting for its turn.
        self.first = False
        #: The task sending the last message, until it is done.
        self.sending: asyncio.Task[None] | None = None


#: The open windows of throttled groups, per event loop (tests run several).
_throttles: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[int, str], _Throttle]
] = weakref.WeakKeyDictionary()
_sending: set[asyncio.Task[None]] = set()


async def throttled_group_send(
    layer: Any, group: str, message: dict[str, Any], merge: Merge, interval: float
) -> None:
    """Send ``message`` to ``group`` at once, or merged with the next ones.

    The first message opens a window of ``interval`` seconds and goes at
    once (as soon as the callbacks ready now have run, with what they send
    to the group); what is sent to the group meanwhile is merged (``merge(older,
    newer)``) into one message that goes when the window ends, and opens the
    next window. So a group hears at most one message per ``interval``, and
    every message is followed, within ``interval``, by one that covers it.
    ``interval`` 0 sends every message.
    """
    if interval <= 0:
        await group_send(layer, group, message)
        return
    loop = asyncio.get_running_loop()
    windows = _throttles.get(loop)
    if windows is None:
        windows = _throttles[loop] = {}
    key = (id(layer), group)
    window = windows.get(key)
    if window is not None:
        window.pending = message if window.pending is None else merge(window.pending, message)
        return
    windows[key] = window = _Throttle(layer, group, merge, interval)
    loop.call_later(interval, _window_ended, loop, windows, key)
    # Sent once the callbacks ready now have run, so that what they send to
    # the group (the other writes of one group commit, acknowledged in this
    # same turn of the event loop) goes with it; the caller does not wait.
    window.pending, window.first = message, True
    loop.call_soon(_send_pending, loop, window)


async def group_send_in_order(layer: Any, group: str, message: dict[str, Any]) -> None:
    """:func:`group_send`, after a throttled first message to ``group`` still
    waiting for its turn (so that the group hears them in the order sent)."""
    windows = _throttles.get(asyncio.get_running_loop())
    window = windows.get((id(layer), group)) if windows else None
    if window is not None:
        if window.first and window.pending is not None:
            first, window.pending, window.first = window.pending, None, False
            await group_send(layer, group, first)
        elif window.sending is not None and not window.sending.done():
            await asyncio.shield(window.sending)
    await group_send(layer, group, message)


def _send_pending(loop: asyncio.AbstractEventLoop, window: _Throttle) -> None:
    message, window.pending, window.first = window.pending, None, False
    if message is None:
        return
    task = window.sending = loop.create_task(group_send(window.layer, window.group, message))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


def _window_ended(
    loop: asyncio.AbstractEventLoop, windows: dict[tuple[int, str], _Throttle], key: tuple[int, str]
) -> None:
    window = windows[key]
    if window.pending is None:
        del windows[key]
        return
    loop.call_later(window.interval, _window_ended, loop, windows, key)
    _send_pending(loop, window)


def frame_send(send: Any) -> Any:
    """The send a ``websocket.send`` message may take: ``send`` past Channels'
    session middleware, whose wrapper saves the session and sets its cookie on
    ``http.response.start`` only; for any other message it reads the session's
    state (through lazy objects, on every frame) and passes the message on.
    Anything else (another wrapper, a subclass, other message types) is kept.
    """
    while True:
        wrapper = getattr(send, "__self__", None)
        if (
            type(wrapper) is not InstanceSessionWrapper
            or getattr(send, "__func__", None) is not InstanceSessionWrapper.send
            or "websocket.send" in wrapper.save_message_types
            or "websocket.send" in wrapper.cookie_response_message_types
        ):
            return send
        send = wrapper.real_send


class FanOutMixin(AsyncConsumer):
    """Fault-tolerant ``group_*`` helpers and receive loop for a consumer.

    The handlers get every message from one inbox, in arrival order: the
    client's (read ahead by a task of their own, at most
    :attr:`read_ahead_limit` waiting) and the channel layer's (taken one at a
    time: the next is received once the handler of the last returned, as
    Channels' ``await_many_dispatch`` does). One queue and two long-lived
    readers instead of Channels' loop, which starts a task per message and
    an ``asyncio.wait`` over both sources each time.
    """

    #: Client messages read ahead of the handlers; past this the client is not read from.
    read_ahead_limit = 1

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        # None when CHANNEL_LAYERS is empty (the stubs say it never is).
        self.channel_layer = get_channel_layer(self.channel_layer_alias)  # type: ignore[assignment]
        self.base_send = send
        self.frame_send = frame_send(send)
        self._group_added: dict[str, float] = {}
        self._task = asyncio.current_task()
        self._stopping = False
        # (message, from the layer) in arrival order; rooms bound each source.
        self._inbox: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()
        self._client_room = asyncio.Semaphore(self.read_ahead_limit)
        self._layer_room = asyncio.Semaphore(1)
        loop = asyncio.get_running_loop()
        self._reader: asyncio.Task[None] | None = loop.create_task(self.read_ahead(receive))
        layer_reader = None
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            layer_reader = loop.create_task(self._read_layer())
            _live.add(self)
        try:
            await self._dispatch_inbox()
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            if self._stopping and self._task is not None:
                self._task.uncancel()
                return  # stop_consumer(): already cleaned up
            # The server is stopping (daphne cancels every application on
            # shutdown): clean up while the loop still runs, then stop.
            await self.on_server_stop()
            raise
        finally:
            _live.discard(self)
            self.stop_reading()
            if layer_reader is not None:
                layer_reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await layer_reader

    async def _dispatch_inbox(self) -> None:
        inbox, dispatch = self._inbox, self.dispatch
        client_room, layer_room = self._client_room, self._layer_room
        while True:
            message, from_layer = await inbox.get()
            if not from_layer:
                client_room.release()  # room for the next one as soon as it is taken
                await dispatch(message)
                continue
            try:
                await dispatch(message)
            finally:
                layer_room.release()

    async def queue_client_message(self, message: dict[str, Any]) -> None:
        """Queue a client message for the handlers (waits while the inbox holds
        :attr:`read_ahead_limit` of them)."""
        await self._client_room.acquire()
        self._inbox.put_nowait((message, False))

    async def read_ahead(self, receive: Any) -> None:
        """Read the client into the inbox (a task of its own) until it disconnects."""
        while True:
            message = await receive()
            await self.queue_client_message(message)
            if message["type"] == "websocket.disconnect":
                return

    def stop_reading(self) -> None:
        """The consumer is done: stop reading the client."""
        if self._reader is not None:
            self._reader.cancel()

    def stop_consumer(self) -> None:
        """Stop this consumer from another task (its connection is over)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._stopping = True
            self._task.cancel()

    async def on_server_stop(self) -> None:
        """Called when the ASGI server cancels this connection on shutdown."""

    async def _read_layer(self) -> None:
        room, inbox = self._layer_room, self._inbox
        while True:
            await room.acquire()  # the last one was handled
            inbox.put_nowait((await self._layer_receive(), True))

    async def _layer_receive(self) -> dict[str, Any]:
        delay = 0.1
        while True:
            try:
                message = await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # channels-redis may turn our cancellation into another
                    # error: stop, or the consumer (and server shutdown) hangs.
                    raise asyncio.CancelledError() from exc
                _Outage.failed("receive", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                # A restarted layer (Redis) forgot our groups: join them again.
                await self.layer_groups_rejoin()
                continue
            _Outage.ok()
            return message

    async def layer_group_add(self, group: str) -> bool:
        """Add this connection to ``group``; False (logged) if the layer failed."""
        try:
            async with asyncio.timeout(LAYER_TIMEOUT):
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:
            _Outage.failed("group_add", exc)
            # Remembered as due: the next refresh or re-join adds it again.
            self._group_added[group] = float("-inf")
            return False
        self._group_added[group] = time.monotonic()
        return True

    async def layer_group_refresh(self, group: str) -> None:
        """Re-add ``group`` if it was added long ago (groups expire in the layer)."""
        added = self._group_added.get(group)
        if added is None or time.monotonic() - added > GROUP_REFRESH:
            await self.layer_group_add(group)

    async def layer_groups_refresh(self) -> None:
        """Re-add the groups added long ago (``layer_group_refresh`` for each)."""
        for group in list(self._group_added):
            await self.layer_group_refresh(group)

    async def layer_groups_rejoin(self) -> int:
        """Re-add every group of this connection; return how many failed."""
        failed = 0
        for group in list(self._group_added):
            failed += not await self.layer_group_add(group)
        return failed

    async def layer_group_discard(self, group: str) -> None:
        self._group_added.pop(group, None)
        try:
            async with asyncio.timeout(LAYER_TIMEOUT):
                await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as exc:
            _Outage.failed("group_discard", exc)

    async def layer_group_send(self, group: str, message: dict[str, Any]) -> None:
        await group_send_in_order(self.channel_layer, group, message)

    async def layer_group_send_throttled(
        self, group: str, message: dict[str, Any], merge: Merge, interval: float
    ) -> None:
        """``layer_group_send``, at most once per ``interval`` (:func:`throttled_group_send`)."""
        await throttled_group_send(self.channel_layer, group, message, merge, interval)
