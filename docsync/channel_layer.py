"""``InProcessChannelLayer``: Channels' in-memory layer, cheap with many connections.

``channels.layers.InMemoryChannelLayer`` scans every channel and every group
membership of the process on each ``receive`` and ``group_send`` (to expire
old messages), builds a new queue for every message sent, and starts a task
per member for a ``group_send``. With a hundred connections on one document
that is most of the server's time: each write's ``dirty`` costs a hundred
scans of everything. This layer behaves the same (messages copied, channel
capacity, ``ChannelFull``, message and group expiry, ``flush``) but expires
at most once a second, keeps a live channel's queue, and delivers a
``group_send`` in one loop.

Like Channels' layer it serves one process only (``docsync.W001`` says so
when ``DEBUG`` is off)::

    CHANNEL_LAYERS = {"default": {"BACKEND": "docsync.channel_layer.InProcessChannelLayer"}}
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

#: Seconds between two scans for expired messages and group memberships.
EXPIRY_SCAN = 1.0

_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def _copy(message: dict[str, Any]) -> dict[str, Any]:
    """A copy no receiver can change for another (flat messages: a plain dict copy)."""
    for value in message.values():
        if not isinstance(value, _IMMUTABLE):
            return deepcopy(message)
    return dict(message)


class InProcessChannelLayer(InMemoryChannelLayer):
    """An in-memory channel layer for one process; options as Channels' in-memory layer."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._scanned = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._scanned >= EXPIRY_SCAN:
            self._scanned = now
            super()._clean_expired()  # type: ignore[misc]  # not in the stubs

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``; ``ChannelFull`` when it holds ``capacity``."""
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_channel_name(channel)
        self._put(channel, _copy(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel`` (waits for one)."""
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            _, message = await queue.get()
        except BaseException:
            # The receiver went away: forget its queue unless messages wait in it.
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise
        return message

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel of ``group``; full channels miss it."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                self._put(channel, _copy(message))
            except ChannelFull:
                pass
