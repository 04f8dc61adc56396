"""Abuse costs the abuser: slowing down failed logins and refused requests.

Everything here lives in one process (a deployment of N processes allows N
times the rates below) and on the event loop, with no database access:

* :class:`KeyedThrottle` counts failures per key (a client address, a user)
  in a sliding window; past a burst, callers with that key wait their turn,
  one at a time, ``delay`` seconds each, so that key gets at most
  ``1 / delay`` answers per second however many sockets it opens.
* :class:`Backoff` makes the same refusal of the same request grow dearer:
  its answer waits ``base``, then twice that, ... up to ``cap`` seconds, until
  a request for that document succeeds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any

from . import metrics
from .conf import docsync_settings

#: Keys a throttle keeps at most; the oldest are forgotten beyond this.
MAX_KEYS = 10_000


class KeyedThrottle:
    """At most ``burst`` failures per key within ``window`` s, then one at a time.

    ``setting`` names the ``DOCSYNC`` settings it follows, read on every use:
    ``"ERROR"`` is ``ERROR_BURST``, ``ERROR_WINDOW`` and ``ERROR_DELAY``.
    """

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()
        # key -> the lock callers of that key take turns on, and how many wait or hold it
        self._turns: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def burst(self) -> int:
        return int(getattr(docsync_settings, f"{self.setting}_BURST"))

    @property
    def window(self) -> float:
        return float(getattr(docsync_settings, f"{self.setting}_WINDOW"))

    @property
    def delay(self) -> float:
        return float(getattr(docsync_settings, f"{self.setting}_DELAY"))

    def _recent(self, key: Hashable, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def failed(self, key: Hashable) -> None:
        """Count one failure of ``key``."""
        now = time.monotonic()
        failures = self._recent(key, now)
        if failures is None:
            failures = self._failures[key] = deque()
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)
        failures.append(now)
        if len(failures) > self.burst:
            failures.popleft()  # only whether the burst is reached matters

    def throttled(self, key: Hashable) -> bool:
        """Whether ``key`` failed ``burst`` times or more in the last ``window`` s."""
        failures = self._recent(key, time.monotonic())
        return failures is not None and len(failures) >= self.burst

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        """Run the block at once, or, while ``key`` is throttled, after waiting
        ``delay`` s, one caller of that key at a time."""
        delay = self.delay
        if delay <= 0 or not self.throttled(key):
            yield
            return
        lock, users = self._turns.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                metrics.slowed_down(self.setting)
                await asyncio.sleep(delay)
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._turns[key]


class Backoff:
    """The delay before answering the ``n``-th identical refusal in a row.

    One per connection. ``refused(key)`` returns how long to hold the answer
    back: 0 for the first, then ``base``, ``2 * base`` ... up to ``cap``.
    ``succeeded(doc_id)`` forgets every refusal about that document.
    """

    def __init__(self, base: float, cap: float, max_keys: int = 256) -> None:
        self.base, self.cap, self.max_keys = base, cap, max_keys
        self._counts: OrderedDict[tuple[Any, ...], int] = OrderedDict()

    def refused(self, key: tuple[Any, ...]) -> float:
        """Count a refusal (``key`` starts with the document id); return its delay."""
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)
        if count == 1 or self.base <= 0:
            return 0.0
        metrics.slowed_down("REFUSAL_BACKOFF")
        return float(min(self.base * 2 ** min(count - 2, 30), self.cap))

    def succeeded(self, doc_id: str) -> None:
        """A request about ``doc_id`` succeeded: its refusals start over."""
        if self._counts:
            for key in [k for k in self._counts if k[0] == doc_id]:
                del self._counts[key]
