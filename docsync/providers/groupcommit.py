"""Group commit: the writes of several threads in one transaction.

:class:`GroupCommit` collects the work items that threads submit while a
group is being run, and runs them as the next group, on the thread of one of
the waiting submitters (the *leader*: no thread of its own). Each submitter
gets its own result, or its own exception, only once the group it was part
of has finished (for :class:`~docsync.providers.postgres.PostgresProvider`:
committed), so nothing is acknowledged before it is durable.

There is no timer: a group is whatever arrived while the previous one ran,
so a lone writer waits for nothing, and the groups grow with the load.
:class:`AsyncGroupCommit` does the same for coroutines on an event loop
(the server's writes): no thread waits, and one hop runs a whole group.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Outcome(Generic[R]):
    """What running one item gave: its ``value``, or the ``error`` it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: R | None = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


class _Slot(Generic[T, R]):
    __slots__ = ("done", "item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        #: Set before ``done``; still ``None`` when woken to lead the next group.
        self.outcome: Outcome[R] | None = None


class GroupCommit(Generic[T, R]):
    """Run the items submitted by many threads in groups, one group at a time.

    ``run_group(items)`` runs a group and returns one :class:`Outcome` per
    item, in order; it is called on the submitting threads, never two at
    once. A group holds at most ``max_size`` items.
    """

    def __init__(
        self, run_group: Callable[[Sequence[T]], list[Outcome[R]]], max_size: int = 32
    ) -> None:
        self._run_group = run_group
        self._max_size = max_size
        self._lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self._running = False

    def submit(self, item: T) -> R:
        """Run ``item`` in the next group; its result, or raise its error."""
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._running
            self._running = True
        if not lead:
            slot.done.wait()
        if slot.outcome is None:  # our turn to lead (first, or handed over)
            self._lead(slot)
        outcome = slot.outcome
        assert outcome is not None
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    def _lead(self, own: _Slot[T, R]) -> None:
        with self._lock:
            self._queue.remove(own)
            group = [own, *self._queue[: self._max_size - 1]]
            del self._queue[: self._max_size - 1]
        try:
            outcomes = self._run_group([slot.item for slot in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{len(outcomes)} outcomes for a group of {len(group)}")
        except BaseException as exc:  # noqa: BLE001  (each submitter gets it)
            outcomes = [Outcome(error=exc) for _ in group]
        with self._lock:
            for slot, outcome in zip(group, outcomes, strict=True):
                slot.outcome = outcome
            if self._queue:
                self._queue[0].done.set()  # the oldest waiting item leads next
            else:
                self._running = False
        for slot in group[1:]:
            slot.done.set()


class AsyncGroupCommit(Generic[T, R]):
    """Group commit for coroutines: the writes of one event loop, one group at a time.

    ``submit(item)`` queues ``item`` and waits for its outcome. While a group
    runs (``run_group(items)``, awaited: for ``PostgresProvider`` one hop to
    a database thread and one transaction), the items submitted meanwhile
    gather and run as the next group, so a group holds whatever arrived
    during the last commit, up to ``max_size``: the number of database
    threads does not bound it, and the whole group costs one thread hop.
    An item whose waiter was cancelled before its group started is dropped
    (it was never acknowledged); once started it runs to its commit.
    """

    def __init__(
        self,
        run_group: Callable[[Sequence[T]], Awaitable[list[Outcome[R]]]],
        max_size: int = 32,
    ) -> None:
        self._run_group = run_group
        self._max_size = max_size
        # One queue and one runner per event loop (tests run several loops).
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: T) -> R:
        """Run ``item`` in the next group; its result, or raise its error."""
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _LoopQueue()
        future: asyncio.Future[R] = loop.create_future()
        queue.items.append((item, future))
        if queue.runner is None:
            queue.runner = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _LoopQueue[T, R]) -> None:
        try:
            while queue.items:
                group = [entry for entry in queue.items[: self._max_size] if not entry[1].done()]
                del queue.items[: self._max_size]
                if group:
                    await self._run(group)
        finally:
            queue.runner = None
            for _, future in queue.items:  # only when the loop is being torn down
                if not future.done():
                    future.cancel()
            queue.items.clear()

    async def _run(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._run_group([item for item, _ in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{len(outcomes)} outcomes for a group of {len(group)}")
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001  (each submitter gets it)
            outcomes = [Outcome(error=exc) for _ in group]
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():
                continue  # its connection went away: committed, never acknowledged
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.value)  # type: ignore[arg-type]


class _LoopQueue(Generic[T, R]):
    __slots__ = ("items", "runner")

    def __init__(self) -> None:
        self.items: list[tuple[T, asyncio.Future[R]]] = []
        self.runner: asyncio.Task[None] | None = None
