"""Thread hops: running blocking code (the database) from the event loop.

What ``channels.db`` is for Channels: every request that may block runs in
ONE hop to a thread of :func:`database_executor` (each thread keeps its own
database connection, so syncs of different documents run in parallel), and
code that never blocks says so with :func:`nonblocking` so that it runs on
the event loop without a hop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from channels.db import database_sync_to_async

from .conf import docsync_settings
from .exceptions import StorageUnavailable
from .outage import StorageOutage, guarded

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def nonblocking(func: F) -> F:
    """Mark a plain ``authorize`` or ``authenticate`` that never blocks (no
    database, no I/O): it is called on the event loop, without a thread hop.

    An ``authorize`` so marked lets requests run on the event loop with a
    non-blocking provider (``InMemoryProvider``).
    """
    setattr(func, "nonblocking", True)  # noqa: B010  (read with getattr)
    return func


def is_nonblocking(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is async or marked :func:`nonblocking` (never needs a hop)."""
    return is_async(func) or bool(getattr(func, "nonblocking", False))


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (an async function or ``__call__``)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004
    )


def call_sync_or_async(func: Callable[..., Any], *args: Any) -> Any:
    """Call a plain or async callable from async code; plain ones run in a DB hop.

    A plain callable may carry its own async twin as ``func.aio`` (same
    arguments, same answers; ``docsync.auth.authenticate`` does): that is
    awaited instead, without a hop; one marked :func:`nonblocking` is
    called on the event loop. Returns an awaitable either way.
    """
    twin = getattr(func, "aio", None)
    if twin is not None and is_async(twin):
        return twin(*args)
    if is_async(func):
        return func(*args)
    if getattr(func, "nonblocking", False):
        return _called(func, *args)
    return in_thread(func, *args)


async def _called(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` as an awaitable (a :func:`nonblocking` callable, on the loop)."""
    return func(*args)


def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run the plain ``func(*args)`` in a DB hop (Channels' thread); an awaitable."""
    return database_sync_to_async(guarded)(func, *args)


_executor: ThreadPoolExecutor | None = None


def database_executor() -> ThreadPoolExecutor:
    """The threads (each with its own database connection) requests run in.

    ``DATABASE_THREADS`` of them, created on first use.
    """
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=docsync_settings.DATABASE_THREADS, thread_name_prefix="docsync-db"
        )
    return _executor


async def hop(inline: bool, func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` in ONE database hop, or right here when nothing blocks.

    Not thread-sensitive: requests run in a pool of threads, each with its
    own database connection, so syncs of different documents proceed in
    parallel (the provider's row lock orders one document). A lost database
    raises ``StorageUnavailable`` and counts as an outage (``docsync.outage``).
    """
    if inline:
        return func(*args)
    try:
        result = await database_sync_to_async(
            guarded, thread_sensitive=False, executor=database_executor()
        )(func, *args)
    except StorageUnavailable as exc:
        StorageOutage.failed(exc)
        raise
    StorageOutage.succeeded()
    return cast(T, result)
