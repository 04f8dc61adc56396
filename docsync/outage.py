"""Storage outages: answered as outages, logged once each way.

When the database cannot be reached (stopped, restarting, network cut), every
request fails the same way, so a traceback per request says nothing new and
buries everything else. Here a lost database becomes
:class:`~docsync.exceptions.StorageUnavailable`, a retryable ``DatabaseError``
whose message says storage is unavailable and never carries the driver's
text; the first failure logs one line, the first success after it logs one
line, and nothing in between. A database error on a connection that still
works (a deadlock, a constraint) is not an outage and is logged as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import metrics
from .exceptions import StorageUnavailable

logger = logging.getLogger(__name__)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (raised in this thread) means the database is unreachable.

    Call it in the thread that ran the query: it asks that thread's Django
    connections whether they still work.
    """
    if isinstance(exc, StorageUnavailable):
        return True
    from django.db import InterfaceError, OperationalError, connections

    if not isinstance(exc, (OperationalError, InterfaceError)):
        return _driver_connection_error(exc)
    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred and (conn.connection is None or not conn.is_usable()):
            return True
    return False


def _driver_connection_error(exc: BaseException) -> bool:
    """A driver's own "cannot connect" error (providers that bypass the ORM)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is optional
        return False
    if not isinstance(exc, psycopg.OperationalError):
        return False
    conn = getattr(exc, "conn", None)
    return conn is None or conn.closed or conn.broken


def guarded(func: Any, *args: Any) -> Any:
    """Run ``func(*args)`` (in a database thread); a lost database raises
    ``StorageUnavailable`` instead of the driver's error."""
    try:
        return func(*args)
    except StorageUnavailable:
        raise
    except Exception as exc:
        if connection_lost(exc):
            raise StorageUnavailable() from exc
        metrics.database_error(exc)
        raise


class StorageOutage:
    """The process's view of its storage: up, or down since when."""

    down_since: float | None = None
    refused = 0

    @classmethod
    def failed(cls, exc: StorageUnavailable) -> None:
        """A request found the storage unreachable (logged on the first)."""
        cls.refused += 1
        metrics.database_unavailable()
        if cls.down_since is not None:
            return
        cls.down_since = time.monotonic()
        cause = exc.__cause__ or exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        logger.error(
            "docsync: storage is unavailable (%s: %s); requests are answered with a "
            "retryable DatabaseError until it is back.",
            cause.__class__.__name__,
            first_line,
        )

    @classmethod
    def succeeded(cls) -> None:
        """A request reached the storage (logs the end of an outage)."""
        if cls.down_since is None:
            return
        seconds = time.monotonic() - cls.down_since
        logger.warning(
            "docsync: storage is back after %.1f s (%s requests answered as unavailable).",
            seconds,
            cls.refused,
        )
        cls.down_since = None
        cls.refused = 0
